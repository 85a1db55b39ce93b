"""The one evaluation entry point: every model (target, retain, unlearned) is evaluated here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import metrics
from .data.loader import StudyData
from .baselines import cheap_scores
from .models import answer_ids, batches, encode_sample, generate, prompt_ids, token_log_probs, verbatim_prompt

UTILITY_SETS = {"real_authors": "ra", "world_facts": "wf"}  # TOFU's names -> summary prefixes


@torch.no_grad()
def _score(model, tokenizer, rows: list[dict], answers: list[str] | None = None, *, max_length: int, batch_size: int,
           device, attacks: bool = False) -> dict[str, np.ndarray]:
    """Per row (with `answers`: the row's question with that answer instead): L, Min-K%,
    teacher-forced argmax hits and scored tokens, and with `attacks` Min-K%++ (a vocabulary-wide
    pass, only where the attacks read it). Batched by length (little padding); results in the
    input order."""
    encoded = [encode_sample(tokenizer, r, max_length, a) for r, a in zip(rows, answers or [None] * len(rows))]
    order = np.argsort([len(e.input_ids) for e in encoded], kind="stable")
    out = {k: np.empty(len(encoded)) for k in ("loglik", "min_k", "answer_hits", "answer_tokens")}
    if attacks:
        out["min_k_pp"] = np.empty(len(encoded))
    for start, batch in zip(range(0, len(order), batch_size),
                            batches([encoded[i] for i in order], batch_size, tokenizer.pad_token_id, device)):
        idx = order[start:start + batch_size]
        logp, mask, hit, *z = token_log_probs(model, batch, with_hits=True, with_zscores=attacks)
        out["loglik"][idx] = (logp.sum(1) / mask.sum(1)).cpu().numpy()
        mask_np = mask.cpu().numpy()
        out["min_k"][idx] = metrics.min_k_percent(logp.cpu().numpy(), mask_np)
        if attacks:
            out["min_k_pp"][idx] = metrics.min_k_percent(z[0].cpu().numpy(), mask_np)
        out["answer_hits"][idx] = hit.sum(1).cpu().numpy()
        out["answer_tokens"][idx] = mask.sum(1).cpu().numpy()
    return out


def _scored_text(row: dict) -> str:
    return row["answer"] if "question" in row else row["text"]


def _membership_scores(model, tokenizer, rows: list[dict], scored: dict, *, gradient: bool, max_length: int,
                       device) -> dict[str, np.ndarray]:
    """Per-sample scores of the membership-inference attacks beside Min-K% (higher = more likely a
    member): LOSS (L), zlib (L / zlib entropy of the answer or text), Min-K%++ and, with
    `gradient`, the negated gradient norm (members sit in flatter places)."""
    out = {"min_k_pp": scored["min_k_pp"],
           "zlib": scored["loglik"] / np.array([metrics.zlib_bytes(_scored_text(r)) for r in rows], dtype=float)}
    if gradient:
        encoded = [encode_sample(tokenizer, r, max_length) for r in rows]
        norms = cheap_scores(model, encoded, pad_id=tokenizer.pad_token_id, device=device, desc=None).grad_norm
        out["neg_grad_norm"] = -norms.to_numpy()
    return out


def _generation_task(tokenizer, rows: list[dict]) -> tuple[list[list[int]], list[str]]:
    """(prompts, references): questions and their answers, or for text rows the text's prefix and
    the rest of it (MUSE's verbatim memorisation, VerbMem)."""
    if "question" in rows[0]:
        return [prompt_ids(tokenizer, r["question"]) for r in rows], [r["answer"] for r in rows]
    prompts, references = zip(*(verbatim_prompt(tokenizer, r) for r in rows))
    return list(prompts), list(references)


def generation_limit(tokenizer, splits: list[list[dict]]) -> int:
    """evaluation.max_new_tokens 'auto': the longest reference among every evaluated row, in the
    model's tokens with EOS, one limit for every split (generation still stops at EOS). Not each
    split's own longest: a model fine-tuned on TOFU's sentences answers "The capital of France is
    Paris." to a world-facts question whose reference is "Paris", and a limit of the reference's
    2 tokens would cut the answer before it names the city."""
    lengths = [0]
    for rows in filter(None, splits):
        if "question" in rows[0]:
            lengths += [len(answer_ids(tokenizer, r["answer"])) for r in rows]
        else:
            lengths += [len(tokenizer.encode(ref, add_special_tokens=False)) + 1
                        for ref in _generation_task(tokenizer, rows)[1]]
    return max(lengths)


def _generated(model, tokenizer, rows: list[dict], *, max_new_tokens: int, batch_size: int, device
               ) -> tuple[list[str], list[str]]:
    """(greedy generations, references) of the rows' generation task."""
    prompts, references = _generation_task(tokenizer, rows)
    return generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    device=device), references


def _wrong(rows: list[dict], max_wrong: int | None) -> int:
    n = min(len(r["perturbed_answer"]) for r in rows)
    return n if max_wrong is None else min(n, max_wrong)


def _split_frame(model, tokenizer, rows: list[dict], split: str, *, max_new_tokens: int, max_wrong: int | None,
                 gradient: bool = False, **kw) -> pd.DataFrame:
    """Forget / retain samples: probability, ROUGE-L of the generation and (QA) the truth ratio
    against the paraphrase; for the forget set also the membership scores."""
    scored = _score(model, tokenizer, rows, attacks=split == "forget", **kw)
    answers, references = _generated(model, tokenizer, rows, max_new_tokens=max_new_tokens,
                                     batch_size=kw["batch_size"], device=kw["device"])
    members = (_membership_scores(model, tokenizer, rows, scored, gradient=gradient, max_length=kw["max_length"],
                                  device=kw["device"]) if split == "forget" else {})
    qa = {}
    if "question" in rows[0]:  # TOFU's truth ratio: paraphrased against wrong answers
        para = _score(model, tokenizer, rows, [r["paraphrased_answer"] for r in rows], **kw)["loglik"]
        n_wrong = _wrong(rows, max_wrong)
        wrong = _score(model, tokenizer, [r for r in rows for _ in range(n_wrong)],
                       [w for r in rows for w in r["perturbed_answer"][:n_wrong]], **kw)["loglik"]
        qa = {"truth_ratio": metrics.truth_ratio(para, wrong.reshape(len(rows), n_wrong))}
    return pd.DataFrame({
        "split": split, "sample_id": np.arange(len(rows)), "loglik": scored["loglik"], "min_k": scored["min_k"],
        "answer_hits": scored["answer_hits"], "answer_tokens": scored["answer_tokens"], **members, **qa,
        "rouge_l": generation_rouge(rows, answers, references), "generation": answers,
    })


def generation_rouge(rows: list[dict], answers: list[str], references: list[str]) -> np.ndarray:
    """Each benchmark's own ROUGE of a generation: TOFU's ROUGE-L recall (stemmed) on QA rows,
    MUSE's ROUGE-L F1 (unstemmed) on a text row's verbatim continuation."""
    score = metrics.rouge_l_recall if "question" in rows[0] else metrics.rouge_l_f1
    return score(answers, references)


def _holdout_frame(model, tokenizer, rows: list[dict], *, gradient: bool, **kw) -> pd.DataFrame:
    """The non-members of the membership attacks: their scores only."""
    scored = _score(model, tokenizer, rows, attacks=True, **kw)
    members = _membership_scores(model, tokenizer, rows, scored, gradient=gradient, max_length=kw["max_length"],
                                 device=kw["device"])
    return pd.DataFrame({"split": "holdout", "sample_id": np.arange(len(rows)), "loglik": scored["loglik"],
                         "min_k": scored["min_k"], **members})


def _utility_frame(model, tokenizer, rows: list[dict], split: str, *, max_new_tokens: int, max_wrong: int | None,
                   **kw) -> pd.DataFrame:
    """real_authors / world_facts: probability normalised over the true and the wrong options, truth
    ratio of the wrong options against the true answer, ROUGE-L (TOFU's 9-part model utility)."""
    n_wrong = _wrong(rows, max_wrong)
    true = _score(model, tokenizer, rows, **kw)["loglik"]
    wrong = _score(model, tokenizer, [r for r in rows for _ in range(n_wrong)],
                   [w for r in rows for w in r["perturbed_answer"][:n_wrong]], **kw)["loglik"].reshape(len(rows), n_wrong)
    answers, references = _generated(model, tokenizer, rows, max_new_tokens=max_new_tokens,
                                     batch_size=kw["batch_size"], device=kw["device"])
    return pd.DataFrame({
        "split": split, "sample_id": np.arange(len(rows)), "loglik": true,
        "normalized_prob": metrics.normalized_probability(true, wrong),
        "truth_ratio": metrics.truth_ratio(true, wrong),
        "rouge_l": metrics.rouge_l_recall(answers, references), "generation": answers,
    })


# Membership-inference attacks (forget set = members, holdout = non-members): summary key ->
# per-sample column, higher = member. `mia_auc` is Min-K% (TOFU's); `mia_reference` compares with
# the retain model's likelihood and `privleak` is MUSE's, both only with the retain model's frame.
ATTACKS = {"mia_auc": "min_k", "mia_loss": "loglik", "mia_zlib": "zlib", "mia_min_k_pp": "min_k_pp",
           "mia_grad_norm": "neg_grad_norm"}


def membership_summary(samples: pd.DataFrame, reference: pd.DataFrame | None) -> dict:
    """Every attack's AUC; with the retain model's frame (`reference`, holding its forget and
    holdout rows) the reference attack (L - L_retain) and PrivLeak of Min-K%."""
    forget = samples[samples.split == "forget"].sort_values("sample_id")
    holdout = samples[samples.split == "holdout"].sort_values("sample_id")
    out = {key: metrics.membership_auc(forget[col], holdout[col]) for key, col in ATTACKS.items() if col in forget}
    has_holdout = reference is not None and (reference.split == "holdout").any()
    if has_holdout:
        ref = {s: reference[reference.split == s].sort_values("sample_id") for s in ("forget", "holdout")}
        out["mia_reference"] = metrics.membership_auc(forget.loglik.to_numpy() - ref["forget"].loglik.to_numpy(),
                                                      holdout.loglik.to_numpy() - ref["holdout"].loglik.to_numpy())
        out["privleak"] = metrics.privleak(out["mia_auc"],
                                           metrics.membership_auc(ref["forget"].min_k, ref["holdout"].min_k))
    else:
        out["mia_reference"] = out["privleak"] = float("nan")
    return out


# Each benchmark's own generation limits: MUSE's VerbMem 128 and KnowMem 32 new tokens; SOUL's
# continuations of Harry Potter passages as long as MUSE's VerbMem (SOUL's own limit was not checked).
VERBMEM_TOKENS, KNOWMEM_TOKENS, SOUL_TOKENS = 128, 32, 128
KNOWMEM_STOPS = ("\n\n", "\nQuestion", "Question:")  # MUSE cuts a KnowMem answer where the next question starts


def _until(text: str, stops: tuple[str, ...]) -> str:
    for stop in stops:
        text = text.split(stop)[0]
    return text.strip()


def _continuations(model, tokenizer, prompts: list[str], max_new_tokens: int, **kw) -> list[str]:
    """Greedy continuations of raw-text prompts (no chat template: MUSE's and SOUL's prompts)."""
    return generate(model, tokenizer, [tokenizer.encode(p) for p in prompts], max_new_tokens=max_new_tokens,
                    batch_size=kw["batch_size"], device=kw["device"])


def _muse(model, tokenizer, sets: dict, **kw) -> tuple[dict, list[pd.DataFrame]]:
    """MUSE's VerbMem (ROUGE-L F1 of 128 greedy tokens after the verbmem prompt, against its gold
    continuation) and KnowMem on forget and retain questions (ROUGE-L F1 of the answer after
    MUSE's few-shot prompt, 32 tokens, cut where a next question starts), x 100 as MUSE reports."""
    summary, frames = {}, []
    rows = sets["verbmem"]
    out = _continuations(model, tokenizer, [r["prompt"] for r in rows], VERBMEM_TOKENS, **kw)
    scores = metrics.rouge_l_f1(out, [r["gt"] for r in rows])
    summary["verbmem_f"] = float(scores.mean() * 100)
    frames.append(pd.DataFrame({"split": "verbmem", "sample_id": np.arange(len(rows)), "rouge_l": scores,
                                "generation": out}))
    for part in ("forget", "retain"):
        rows, icl = sets[f"knowmem_{part}"], sets[f"knowmem_{part}_icl"]
        shots = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in icl)
        out = [_until(a, KNOWMEM_STOPS) for a in _continuations(
            model, tokenizer, [f"{shots}Question: {r['question']}\nAnswer: " for r in rows], KNOWMEM_TOKENS, **kw)]
        scores = metrics.rouge_l_f1(out, [r["answer"] for r in rows])
        summary[f"knowmem_{part}_f"] = float(scores.mean() * 100)
        frames.append(pd.DataFrame({"split": f"knowmem_{part}", "sample_id": np.arange(len(rows)), "rouge_l": scores,
                                    "generation": out}))
    return summary, frames


def _wmdp(model, tokenizer, sets: dict, **kw) -> tuple[dict, list[pd.DataFrame]]:
    """WMDP's accuracy, scored by lm-evaluation-harness exactly as its wmdp tasks: on the questions
    taught and then forgotten, the held-out ones (what the model knew before), and those retained;
    or, for a study on WMDP's corpora, on its published Bio and Chem questions."""
    import tempfile

    from . import harness

    with tempfile.TemporaryDirectory() as folder:
        tasks = []
        for name in sets:
            path = Path(folder) / f"{name}.jsonl"
            path.write_text("".join(json.dumps({k: r[k] for k in ("question", "choices", "answer")}) + "\n"
                                    for r in sets[name]))
            subject = "chemistry" if name in ("wmdp_retain", "wmdp_chem") else "biology"  # the studies' retain: Chem
            harness.multiple_choice_task(f"local_{name}", path, folder, subject=subject)
            tasks.append(f"local_{name}")
        scores, items = harness.harness_accuracy(model, tokenizer, tasks, include_path=folder,
                                                 batch_size=kw["batch_size"])
    summary = {f"{task[len('local_'):]}_acc": scores[task]["acc"] for task in tasks}
    frames = [pd.DataFrame({"split": task[len("local_"):], "sample_id": part.doc_id.to_numpy(),
                            "correct": part.acc.to_numpy()}) for task, part in items.groupby("task", sort=False)]
    return summary, frames


def _whp(model, tokenizer, sets: dict, **kw) -> tuple[dict, list[pd.DataFrame]]:
    """Who's Harry Potter as SOUL evaluates it: the greedy continuation of a passage's first 100
    and 300 words against the rest of it (ROUGE-L recall x 100, unstemmed, and sacreBLEU); and trivia
    accuracy: the true answer more likely than the false one (summed log-likelihood)."""
    summary, frames = {}, []
    for name in ("soul_100", "soul_300"):
        rows = sets[name]
        out = _continuations(model, tokenizer, [r["prompt"] for r in rows], SOUL_TOKENS, **kw)
        rouge = metrics.rouge_l_recall(out, [r["response"] for r in rows], stemmer=False)
        bleu = metrics.sentence_bleu(out, [r["response"] for r in rows])
        summary |= {f"{name}_rouge": float(rouge.mean() * 100), f"{name}_bleu": float(bleu.mean())}
        frames.append(pd.DataFrame({"split": name, "sample_id": np.arange(len(rows)), "rouge_l": rouge, "bleu": bleu,
                                    "generation": out}))
    rows = [{"question": r["question"], "answer": r["true_answer"]} for r in sets["trivia"]]
    score = dict(max_length=kw["max_length"], batch_size=kw["batch_size"], device=kw["device"])
    total = {}
    for side in ("true_answer", "false_answer"):
        s = _score(model, tokenizer, rows, [r[side] for r in sets["trivia"]], **score)
        total[side] = s["loglik"] * s["answer_tokens"]
    correct = (total["true_answer"] > total["false_answer"]).astype(float)
    summary["trivia_acc"] = float(correct.mean())
    frames.append(pd.DataFrame({"split": "trivia", "sample_id": np.arange(len(rows)), "correct": correct}))
    return summary, frames


BENCHMARK_EVALUATIONS = {"muse_news": _muse, "muse_books": _muse, "wmdp": _wmdp, "whp": _whp}


def evaluate(model, tokenizer, data: StudyData, *, max_length: int, max_new_tokens: int, batch_size: int, device,
             max_wrong_answers: int | None = None, reference: pd.DataFrame | None = None,
             gradient_attack: bool = True) -> tuple[dict, pd.DataFrame]:
    """Evaluate one model. `reference` is the retain model's per-sample frame; with it, forget
    quality (KS test of forget truth ratios: its p-value, TOFU's convention, and its statistic),
    the reference attack and PrivLeak are reported. Model utility is the harmonic mean of
    probability, ROUGE and truth ratio on retain, and on real_authors and world_facts where the
    data has them (9 parts on TOFU). Text data have no paraphrased or wrong answers: no truth
    ratio, hence no forget quality, and model utility is the harmonic mean of the retain
    probability and verbatim-continuation ROUGE. `gradient_attack`: the gradient-norm attack (one
    backward pass per forget and holdout sample). On a benchmark's data (MUSE, WMDP, WHP) the
    benchmark's own evaluation is added (`BENCHMARK_EVALUATIONS`): its metrics in the summary, its
    items in the frame under their set's name. Returns (summary, per-sample frame)."""
    model.eval()
    if max_new_tokens == "auto":
        max_new_tokens = generation_limit(tokenizer, [data.forget_eval, data.retain_eval, *data.utility.values()])
    kw = dict(max_length=max_length, max_new_tokens=int(max_new_tokens), batch_size=batch_size, device=device,
              max_wrong=max_wrong_answers)
    score = dict(max_length=max_length, batch_size=batch_size, device=device)
    frames = [_split_frame(model, tokenizer, data.forget_eval, "forget", gradient=gradient_attack, **kw),
              _split_frame(model, tokenizer, data.retain_eval, "retain", **kw)]
    frames += [_utility_frame(model, tokenizer, rows, name, **kw) for name, rows in data.utility.items()]
    frames.append(_holdout_frame(model, tokenizer, data.holdout, gradient=gradient_attack, **score))
    own = {}
    if data.benchmark:  # the benchmark's own evaluation, beside the study's
        own, parts = BENCHMARK_EVALUATIONS[data.benchmark["name"]](model, tokenizer, data.benchmark["sets"], **score)
        own["benchmark"] = data.benchmark["name"]
        frames += parts
    samples = pd.concat(frames, ignore_index=True)
    forget, retain = samples[samples.split == "forget"], samples[samples.split == "retain"]
    qa = data.kind == "qa"
    summary = {
        "data_kind": data.kind,
        "forget_prob": float(metrics.probability(forget.loglik).mean()),
        "forget_rouge": float(forget.rouge_l.mean()),
        "forget_loglik": float(forget.loglik.mean()),
        "retain_prob": float(metrics.probability(retain.loglik).mean()),
        "retain_rouge": float(retain.rouge_l.mean()),
        "retain_loglik": float(retain.loglik.mean()),
        **membership_summary(samples, reference),
        **own,
    }
    utility = [summary["retain_prob"], summary["retain_rouge"]]
    if qa:
        summary["forget_truth_ratio"] = metrics.forget_truth_ratio(forget.truth_ratio)
        summary["retain_truth_ratio"] = metrics.retain_truth_ratio(retain.truth_ratio)
        utility.append(summary["retain_truth_ratio"])
    for name in data.utility:
        part, prefix = samples[samples.split == name], UTILITY_SETS[name]
        summary.update({f"{prefix}_prob": float(part.normalized_prob.mean()), f"{prefix}_rouge": float(part.rouge_l.mean()),
                        f"{prefix}_truth_ratio": metrics.retain_truth_ratio(part.truth_ratio)})
        utility += [summary[f"{prefix}_prob"], summary[f"{prefix}_rouge"], summary[f"{prefix}_truth_ratio"]]
    for split, part in (("forget", forget), ("retain", retain)):
        summary[f"{split}_token_accuracy"] = float(part.answer_hits.sum() / part.answer_tokens.sum())
    summary["model_utility"] = metrics.model_utility(utility)
    summary["model_utility_parts"] = len(utility)
    summary["utility_splits"] = ["retain", *data.utility]
    summary["max_new_tokens"] = int(max_new_tokens)
    if reference is not None and qa:
        ref = reference[reference.split == "forget"]
        summary["forget_quality"], summary["forget_ks"] = metrics.forget_quality(forget.truth_ratio.to_numpy(),
                                                                                 ref.truth_ratio.to_numpy())
    return summary, samples


# OpenUnlearning's names (its TOFU_EVAL.json) for what both tools compute: metric -> (split,
# per-sample column, the key of each per-sample value, the summary key of the aggregate).
OPENUNLEARNING = {
    "qa": {"forget_Q_A_Prob": ("forget", "prob", "prob", "forget_prob"),
           "forget_Q_A_ROUGE": ("forget", "rouge_l", "rougeL_recall", "forget_rouge"),
           "forget_truth_ratio": ("forget", "truth_ratio", "score", "forget_truth_ratio"),
           "retain_Q_A_Prob": ("retain", "prob", "prob", "retain_prob"),
           "retain_Q_A_ROUGE": ("retain", "rouge_l", "rougeL_recall", "retain_rouge"),
           "retain_Truth_Ratio": ("retain", "truth_ratio", "score", "retain_truth_ratio"),
           **{f"{p}_Q_A_Prob_normalised": (s, "normalized_prob", "prob", f"{p}_prob") for s, p in UTILITY_SETS.items()},
           **{f"{p}_Q_A_ROUGE": (s, "rouge_l", "rougeL_recall", f"{p}_rouge") for s, p in UTILITY_SETS.items()},
           **{f"{p}_Truth_Ratio": (s, "truth_ratio", "score", f"{p}_truth_ratio") for s, p in UTILITY_SETS.items()}},
    "text": {"forget_Prob": ("forget", "prob", "prob", "forget_prob"),
             "forget_verbmem_ROUGE": ("forget", "rouge_l", "rougeL_f1", "forget_rouge"),
             "retain_Prob": ("retain", "prob", "prob", "retain_prob"),
             "retain_verbmem_ROUGE": ("retain", "rouge_l", "rougeL_f1", "retain_rouge")},
}
OPENUNLEARNING_AGGREGATES = {"forget_quality": "forget_quality", "model_utility": "model_utility",
                             "privleak": "privleak", "mia_min_k": "mia_auc", "mia_loss": "mia_loss",
                             "mia_zlib": "mia_zlib", "mia_min_k_plus_plus": "mia_min_k_pp",
                             "mia_gradnorm": "mia_grad_norm", "mia_reference": "mia_reference"}


def _number(x) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


def openunlearning_eval(summary: dict, samples: pd.DataFrame) -> dict:
    """One evaluated model in OpenUnlearning's TOFU_EVAL.json layout (metric -> {agg_value,
    value_by_index: {sample index: {value key: value}}}), so that our runs sit beside theirs.
    Per-sample probabilities are exp(L) with L the mean answer log-likelihood; aggregates
    (forget quality, model utility, PrivLeak, the attacks' AUCs) have no per-sample values."""
    out = {}
    frame = samples.assign(prob=np.exp(samples.loglik))
    for name, (split, column, key, aggregate) in OPENUNLEARNING[summary.get("data_kind", "qa")].items():
        part = frame[frame.split == split].sort_values("sample_id")
        if aggregate not in summary or column not in part or part.empty:
            continue
        values = {str(int(i)): {key: _number(v)} for i, v in zip(part.sample_id, part[column])}
        if column == "rouge_l":
            for i, g in zip(part.sample_id, part.generation):
                values[str(int(i))]["generation"] = g if isinstance(g, str) else ""
        out[name] = {"agg_value": _number(summary[aggregate]), "value_by_index": values}
    for name, key in OPENUNLEARNING_AGGREGATES.items():
        if key in summary and _number(summary[key]) is not None:
            out[name] = {"agg_value": _number(summary[key])}
    return out
