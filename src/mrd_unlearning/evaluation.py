"""The one evaluation entry point: every model (target, retain, unlearned) is evaluated here."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from . import metrics
from .data.loader import StudyData
from .models import batches, encode_qa, generate_answers, token_log_probs
from .training import memorization_accuracy


@torch.no_grad()
def _score(model, tokenizer, pairs: list[tuple[str, str]], *, max_length: int, batch_size: int, device):
    """(L per sample, Min-K% per sample) for (question, answer) pairs."""
    encoded = [encode_qa(tokenizer, q, a, max_length) for q, a in pairs]
    logliks, mink = [], []
    for batch in batches(encoded, batch_size, tokenizer.pad_token_id, device):
        logp, mask = token_log_probs(model, batch)
        logliks.append((logp.sum(1) / mask.sum(1)).cpu().numpy())
        mink.append(metrics.min_k_percent(logp.cpu().numpy(), mask.cpu().numpy()))
    return np.concatenate(logliks), np.concatenate(mink)


def _split_frame(model, tokenizer, rows: list[dict], split: str, **kw) -> pd.DataFrame:
    max_new_tokens = kw.pop("max_new_tokens")
    loglik, mink = _score(model, tokenizer, [(r["question"], r["answer"]) for r in rows], **kw)
    para, _ = _score(model, tokenizer, [(r["question"], r["paraphrased_answer"]) for r in rows], **kw)
    n_wrong = min(len(r["perturbed_answer"]) for r in rows)
    wrong, _ = _score(model, tokenizer, [(r["question"], w) for r in rows for w in r["perturbed_answer"][:n_wrong]], **kw)
    answers = generate_answers(model, tokenizer, [r["question"] for r in rows], max_new_tokens=max_new_tokens,
                               batch_size=kw["batch_size"], device=kw["device"])
    return pd.DataFrame({
        "split": split, "sample_id": np.arange(len(rows)), "loglik": loglik, "min_k": mink,
        "truth_ratio": metrics.truth_ratio(para, wrong.reshape(len(rows), n_wrong)),
        "rouge_l": metrics.rouge_l_recall(answers, [r["answer"] for r in rows]), "generation": answers,
    })


def evaluate(model, tokenizer, data: StudyData, *, max_length: int, max_new_tokens: int, batch_size: int, device,
             reference: pd.DataFrame | None = None) -> tuple[dict, pd.DataFrame]:
    """Evaluate one model. `reference` is the retain model's per-sample frame; with it, forget
    quality (KS test of forget truth ratios) is reported. Returns (summary, per-sample frame)."""
    model.eval()
    kw = dict(max_length=max_length, max_new_tokens=max_new_tokens, batch_size=batch_size, device=device)
    samples = pd.concat([_split_frame(model, tokenizer, data.forget_eval, "forget", **kw),
                         _split_frame(model, tokenizer, data.retain_eval, "retain", **kw)], ignore_index=True)
    _, holdout_mink = _score(model, tokenizer, [(r["question"], r["answer"]) for r in data.holdout],
                             max_length=max_length, batch_size=batch_size, device=device)
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
    for split, rows in (("forget", data.forget), ("retain", data.retain_eval)):
        encoded = [encode_qa(tokenizer, r["question"], r["answer"], max_length) for r in rows]
        summary[f"{split}_token_accuracy"] = memorization_accuracy(model, encoded, batch_size, tokenizer.pad_token_id, device)
    summary["model_utility"] = metrics.model_utility(
        [summary["retain_prob"], summary["retain_rouge"], summary["retain_truth_ratio"]])
    if reference is not None:
        ref = reference[reference.split == "forget"]
        summary["forget_quality"] = metrics.forget_quality(forget.truth_ratio.to_numpy(), ref.truth_ratio.to_numpy())
    return summary, samples
