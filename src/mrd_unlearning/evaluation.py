"""The one evaluation entry point: every model (target, retain, unlearned) is evaluated here."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from . import metrics
from .data.loader import StudyData
from .models import batches, encode_qa, generate_answers, token_log_probs

UTILITY_SETS = {"real_authors": "ra", "world_facts": "wf"}  # TOFU's names -> summary prefixes


@torch.no_grad()
def _score(model, tokenizer, pairs: list[tuple[str, str]], *, max_length: int, batch_size: int, device):
    """Per (question, answer) pair: L, Min-K%, and teacher-forced argmax hits and answer tokens.
    Batched by length (little padding); results in the input order."""
    encoded = [encode_qa(tokenizer, q, a, max_length) for q, a in pairs]
    order = np.argsort([len(e.input_ids) for e in encoded], kind="stable")
    loglik, mink, hits, tokens = (np.empty(len(encoded)) for _ in range(4))
    for start, batch in zip(range(0, len(order), batch_size),
                            batches([encoded[i] for i in order], batch_size, tokenizer.pad_token_id, device)):
        idx = order[start:start + batch_size]
        logp, mask, hit = token_log_probs(model, batch, with_hits=True)
        loglik[idx] = (logp.sum(1) / mask.sum(1)).cpu().numpy()
        mink[idx] = metrics.min_k_percent(logp.cpu().numpy(), mask.cpu().numpy())
        hits[idx] = hit.sum(1).cpu().numpy()
        tokens[idx] = mask.sum(1).cpu().numpy()
    return loglik, mink, hits, tokens


def _wrong(rows: list[dict], max_wrong: int | None) -> int:
    n = min(len(r["perturbed_answer"]) for r in rows)
    return n if max_wrong is None else min(n, max_wrong)


def _split_frame(model, tokenizer, rows: list[dict], split: str, *, max_new_tokens: int, max_wrong: int | None,
                 **kw) -> pd.DataFrame:
    """Forget / retain samples: probability, truth ratio against the paraphrase, ROUGE-L."""
    loglik, mink, hits, tokens = _score(model, tokenizer, [(r["question"], r["answer"]) for r in rows], **kw)
    para = _score(model, tokenizer, [(r["question"], r["paraphrased_answer"]) for r in rows], **kw)[0]
    n_wrong = _wrong(rows, max_wrong)
    wrong = _score(model, tokenizer, [(r["question"], w) for r in rows for w in r["perturbed_answer"][:n_wrong]], **kw)[0]
    answers = generate_answers(model, tokenizer, [r["question"] for r in rows], max_new_tokens=max_new_tokens,
                               batch_size=kw["batch_size"], device=kw["device"])
    return pd.DataFrame({
        "split": split, "sample_id": np.arange(len(rows)), "loglik": loglik, "min_k": mink,
        "answer_hits": hits, "answer_tokens": tokens,
        "truth_ratio": metrics.truth_ratio(para, wrong.reshape(len(rows), n_wrong)),
        "rouge_l": metrics.rouge_l_recall(answers, [r["answer"] for r in rows]), "generation": answers,
    })


def _utility_frame(model, tokenizer, rows: list[dict], split: str, *, max_new_tokens: int, max_wrong: int | None,
                   **kw) -> pd.DataFrame:
    """real_authors / world_facts: probability normalised over the true and the wrong options, truth
    ratio of the wrong options against the true answer, ROUGE-L (TOFU's 9-part model utility)."""
    n_wrong = _wrong(rows, max_wrong)
    true = _score(model, tokenizer, [(r["question"], r["answer"]) for r in rows], **kw)[0]
    wrong = _score(model, tokenizer, [(r["question"], w) for r in rows for w in r["perturbed_answer"][:n_wrong]],
                   **kw)[0].reshape(len(rows), n_wrong)
    answers = generate_answers(model, tokenizer, [r["question"] for r in rows], max_new_tokens=max_new_tokens,
                               batch_size=kw["batch_size"], device=kw["device"])
    return pd.DataFrame({
        "split": split, "sample_id": np.arange(len(rows)), "loglik": true,
        "normalized_prob": metrics.normalized_probability(true, wrong),
        "truth_ratio": metrics.truth_ratio(true, wrong),
        "rouge_l": metrics.rouge_l_recall(answers, [r["answer"] for r in rows]), "generation": answers,
    })


def evaluate(model, tokenizer, data: StudyData, *, max_length: int, max_new_tokens: int, batch_size: int, device,
             max_wrong_answers: int | None = None, reference: pd.DataFrame | None = None) -> tuple[dict, pd.DataFrame]:
    """Evaluate one model. `reference` is the retain model's per-sample frame; with it, forget
    quality (KS test of forget truth ratios: its p-value, TOFU's convention, and its statistic) is reported. Model utility is the harmonic mean of
    probability, ROUGE and truth ratio on retain, and on real_authors and world_facts where the
    data has them (9 parts on TOFU). Returns (summary, per-sample frame)."""
    model.eval()
    kw = dict(max_length=max_length, max_new_tokens=max_new_tokens, batch_size=batch_size, device=device,
              max_wrong=max_wrong_answers)
    frames = [_split_frame(model, tokenizer, data.forget_eval, "forget", **kw),
              _split_frame(model, tokenizer, data.retain_eval, "retain", **kw)]
    frames += [_utility_frame(model, tokenizer, rows, name, **kw) for name, rows in data.utility.items()]
    samples = pd.concat(frames, ignore_index=True)
    score = dict(max_length=max_length, batch_size=batch_size, device=device)
    holdout_mink = _score(model, tokenizer, [(r["question"], r["answer"]) for r in data.holdout], **score)[1]
    forget, retain = samples[samples.split == "forget"], samples[samples.split == "retain"]
    summary = {
        "forget_prob": float(metrics.probability(forget.loglik).mean()),
        "forget_rouge": float(forget.rouge_l.mean()),
        "forget_truth_ratio": metrics.forget_truth_ratio(forget.truth_ratio),
        "forget_loglik": float(forget.loglik.mean()),
        "retain_prob": float(metrics.probability(retain.loglik).mean()),
        "retain_rouge": float(retain.rouge_l.mean()),
        "retain_truth_ratio": metrics.retain_truth_ratio(retain.truth_ratio),
        "retain_loglik": float(retain.loglik.mean()),
        "mia_auc": metrics.membership_auc(forget.min_k.to_numpy(), holdout_mink),
    }
    utility = [summary["retain_prob"], summary["retain_rouge"], summary["retain_truth_ratio"]]
    for name in data.utility:
        part, prefix = samples[samples.split == name], UTILITY_SETS[name]
        summary.update({f"{prefix}_prob": float(part.normalized_prob.mean()), f"{prefix}_rouge": float(part.rouge_l.mean()),
                        f"{prefix}_truth_ratio": metrics.retain_truth_ratio(part.truth_ratio)})
        utility += [summary[f"{prefix}_prob"], summary[f"{prefix}_rouge"], summary[f"{prefix}_truth_ratio"]]
    for split, part in (("forget", forget), ("retain", retain)):
        summary[f"{split}_token_accuracy"] = float(part.answer_hits.sum() / part.answer_tokens.sum())
    summary["model_utility"] = metrics.model_utility(utility)
    summary["model_utility_parts"] = len(utility)
    if reference is not None:
        ref = reference[reference.split == "forget"]
        summary["forget_quality"], summary["forget_ks"] = metrics.forget_quality(forget.truth_ratio.to_numpy(),
                                                                                 ref.truth_ratio.to_numpy())
    return summary, samples
