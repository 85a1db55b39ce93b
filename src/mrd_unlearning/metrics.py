"""Metrics of STUDY 6, TOFU / OpenUnlearning conventions. Pure functions on arrays."""
from __future__ import annotations

import numpy as np
from rouge_score import rouge_scorer
from scipy import stats

_ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def probability(loglik: np.ndarray) -> np.ndarray:
    """exp(mean answer-token log-likelihood), per sample."""
    return np.exp(np.asarray(loglik, dtype=float))


def truth_ratio(paraphrased_loglik: np.ndarray, wrong_logliks: np.ndarray) -> np.ndarray:
    """R = P_wrong / P_paraphrased, P_wrong the geometric mean over the wrong answers.

    `wrong_logliks` has shape (N, W); with length-normalised log-likelihoods the geometric mean
    of probabilities is the exp of the mean log-likelihood."""
    return np.exp(np.asarray(wrong_logliks, dtype=float).mean(axis=1) - np.asarray(paraphrased_loglik, dtype=float))


def normalized_probability(true_loglik: np.ndarray, wrong_logliks: np.ndarray) -> np.ndarray:
    """P(true) / (P(true) + sum P(wrong)) over a question's options, P = exp(mean log-likelihood)
    (real_authors / world_facts: the answer competes with its wrong options)."""
    options = np.column_stack([np.asarray(true_loglik, dtype=float), np.asarray(wrong_logliks, dtype=float)])
    options = np.exp(options - options.max(axis=1, keepdims=True))
    return options[:, 0] / options.sum(axis=1)


def forget_truth_ratio(r: np.ndarray) -> float:
    """Forget set: mean(min(R, 1/R)) (1 = cannot tell true from wrong)."""
    r = np.asarray(r, dtype=float)
    return float(np.minimum(r, 1.0 / r).mean())


def retain_truth_ratio(r: np.ndarray) -> float:
    """Retain-type sets: mean(max(0, 1 - R)) (1 = true answer far more likely than wrong ones)."""
    return float(np.maximum(0.0, 1.0 - np.asarray(r, dtype=float)).mean())


def rouge_l_recall(predictions: list[str], references: list[str]) -> np.ndarray:
    return np.array([_ROUGE.score(ref, pred)["rougeL"].recall for pred, ref in zip(predictions, references)])


def forget_quality(unlearned_truth_ratios: np.ndarray, retain_model_truth_ratios: np.ndarray) -> float:
    """KS-test p-value between the forget-set truth ratios of the unlearned and the retain model."""
    return float(stats.ks_2samp(unlearned_truth_ratios, retain_model_truth_ratios).pvalue)


def model_utility(values: list[float]) -> float:
    """Harmonic mean of the utility components (0 if any is 0)."""
    values = np.asarray(values, dtype=float)
    return 0.0 if (values <= 0).any() else float(stats.hmean(values))


def min_k_percent(token_logp: np.ndarray, mask: np.ndarray, k: float = 0.2) -> np.ndarray:
    """Min-K% probability: mean of the lowest k share of token log-probs, per sample."""
    out = []
    for logp, m in zip(np.asarray(token_logp), np.asarray(mask, dtype=bool)):
        vals = np.sort(logp[m])
        out.append(vals[: max(1, int(np.ceil(k * len(vals))))].mean())
    return np.array(out)


def membership_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """AUC of telling members (higher score) from non-members: P(member > non-member), ties half."""
    u = stats.mannwhitneyu(member_scores, nonmember_scores, alternative="two-sided").statistic
    return float(u / (len(member_scores) * len(nonmember_scores)))


def steps_to_level(steps: np.ndarray, values: np.ndarray, level: float) -> float:
    """First logged step at which `values` fall to `level` (NaN if never)."""
    hit = np.flatnonzero(np.asarray(values) <= level)
    return float(np.asarray(steps)[hit[0]]) if hit.size else float("nan")


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-interval over seeds (NaN bounds with fewer than two values)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1) * stats.sem(values))
    return mean, mean - half, mean + half
