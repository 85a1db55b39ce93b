"""The unlearning metrics, in TOFU's and OpenUnlearning's conventions. Pure functions on arrays."""
from __future__ import annotations

import functools
import zlib

import numpy as np
from scipy import stats


@functools.cache
def _rouge(stemmer: bool):
    """Built on first use: building it logs through the root logger, which would otherwise
    configure logging (and double every Snakemake console line) in any process importing us."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stemmer)


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


def rouge_l_recall(predictions: list[str], references: list[str], stemmer: bool = True) -> np.ndarray:
    """TOFU's ROUGE: ROUGE-L recall of the reference, with stemming (SOUL's continuations: without)."""
    scorer = _rouge(stemmer=stemmer)
    return np.array([scorer.score(ref, pred)["rougeL"].recall for pred, ref in zip(predictions, references)])


def rouge_l_f1(predictions: list[str], references: list[str]) -> np.ndarray:
    """MUSE's ROUGE (VerbMem, KnowMem): ROUGE-L F1, without stemming."""
    scorer = _rouge(stemmer=False)
    return np.array([scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)])


def sentence_bleu(predictions: list[str], references: list[str]) -> np.ndarray:
    """sacreBLEU (0-100, its default 13a tokenizer) of each prediction against its reference."""
    import sacrebleu

    return np.array([sacrebleu.sentence_bleu(pred, [ref]).score for pred, ref in zip(predictions, references)])


def forget_quality(unlearned_truth_ratios: np.ndarray, retain_model_truth_ratios: np.ndarray) -> tuple[float, float]:
    """Forget quality (TOFU): the KS-test p-value between the forget-set truth ratios of the
    unlearned and the retain model, and the KS statistic beside it (0 = the same distribution),
    which keeps its resolution where p-values over a few dozen samples jump."""
    test = stats.ks_2samp(unlearned_truth_ratios, retain_model_truth_ratios)
    return float(test.pvalue), float(test.statistic)


def model_utility(values: list[float]) -> float:
    """Harmonic mean of the utility components (0 if any is 0)."""
    values = np.asarray(values, dtype=float)
    return 0.0 if (values <= 0).any() else float(stats.hmean(values))


MIN_K = 0.4  # MUSE's and OpenUnlearning's k for Min-K% and Min-K%++


def min_k_percent(token_logp: np.ndarray, mask: np.ndarray, k: float = MIN_K) -> np.ndarray:
    """Min-K% probability: mean of the lowest max(1, floor(k x n)) of a sample's n token
    log-probs (the references' count, so values carry the references' meaning)."""
    out = []
    for logp, m in zip(np.asarray(token_logp), np.asarray(mask, dtype=bool)):
        vals = np.sort(logp[m])
        out.append(vals[: max(1, int(k * len(vals)))].mean())
    return np.array(out)


def membership_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """AUC of telling members (higher score) from non-members: P(member > non-member), ties half."""
    member_scores, nonmember_scores = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    if np.isnan(member_scores).any() or np.isnan(nonmember_scores).any():
        return float("nan")
    u = stats.mannwhitneyu(member_scores, nonmember_scores, alternative="two-sided").statistic
    return float(u / (len(member_scores) * len(nonmember_scores)))


def zlib_bytes(text: str) -> int:
    """The zlib entropy of Carlini et al. (2021): the length of the compressed UTF-8 text."""
    return len(zlib.compress(text.encode("utf-8")))


def privleak(member_auc: float, retain_member_auc: float) -> float:
    """MUSE's PrivLeak, from AUCs of telling forget (members) from holdout (`membership_auc`):
    MUSE scores the forget set as the negative class, so its AUC is 1 - ours, and PrivLeak =
    (AUC - AUC of the retain model) / AUC of the retain model x 100 on those. 0 = as private as
    never having trained on the forget set; a model that memorised it gives about -100, one that
    over-unlearned it (forget less likely than unseen text) a positive value."""
    auc, retain_auc = 1.0 - member_auc, 1.0 - retain_member_auc
    return float((auc - retain_auc) / retain_auc * 100.0)


# --- efficiency: how fast the forget set reaches the retain model's level --------------------

def level_crossing(steps: np.ndarray, values: np.ndarray, level: float, budget: float) -> tuple[float, bool]:
    """The step at which a logged curve first falls to `level`, linearly interpolated between the
    last point above it and the first at or below it; right-censored at `budget`: (budget, True)
    when it is not reached by then. Already at the level at step 0: (0, False)."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    hit = np.flatnonzero(values <= level)
    if not hit.size:
        return float(budget), True
    i = hit[0]
    if i == 0:
        return 0.0, False
    s0, s1, v0, v1 = steps[i - 1], steps[i], values[i - 1], values[i]
    crossing = s0 + (v0 - level) / (v0 - v1) * (s1 - s0)
    return (float(crossing), False) if crossing <= budget else (float(budget), True)


def forgetting_progress(values: np.ndarray, level: float) -> np.ndarray:
    """(L_0 - L_t) / (L_0 - L_retain): 0 at the start, 1 at the retain model's level."""
    values = np.asarray(values, dtype=float)
    return (values[0] - values) / (values[0] - level)


def progress_at(steps: np.ndarray, values: np.ndarray, level: float, step: float) -> float:
    """Forgetting progress at `step` (interpolated between logged points; not clipped, so
    overshooting the level shows as > 1)."""
    return float(np.interp(step, np.asarray(steps, dtype=float), forgetting_progress(values, level)))


def forgetting_auc(steps: np.ndarray, values: np.ndarray, level: float, budget: float) -> float:
    """Area under the forgetting curve over [0, budget] divided by the budget, progress clipped to
    [0, 1]: 1 = at the retain level at once, 0 = no progress; overshooting the level earns nothing."""
    steps = np.asarray(steps, dtype=float)
    progress = forgetting_progress(values, level)
    grid = [steps[steps <= budget], [budget]]
    for bound in (0.0, 1.0):  # where the piecewise-linear curve crosses a clipping bound
        a, b = progress[:-1] - bound, progress[1:] - bound
        cross = np.flatnonzero(a * b < 0)
        grid.append(steps[cross] + a[cross] / (a[cross] - b[cross]) * np.diff(steps)[cross])
    grid = np.union1d(np.concatenate(grid), [])
    grid = grid[grid <= budget]
    clipped = np.clip(np.interp(grid, steps, progress), 0.0, 1.0)
    return float(np.trapezoid(clipped, grid) / budget)
