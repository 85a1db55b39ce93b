"""The verdict on each claim, pooled over replicates and per replicate, as data.

Every claim is decided against a smallest effect of interest, in one of four words:

- `supported`: the interval excludes 0 (for C1: the spread threshold) on the side the claim
  predicts;
- `contradicted`: it excludes 0 on the other side;
- `no effect of interesting size`: the interval lies inside plus or minus the smallest effect of
  interest (an equivalence test), so an effect that large is ruled out;
- `inconclusive`: neither; the design could not tell.

C4 reads two metrics per pair and many pairs, so it adds `partly supported` (one metric improves,
the other does not detectably change) and `mixed` (one improves, one worsens). A verdict comes
from intervals and corrected p-values, never from a point estimate near a threshold, so that small
floating-point differences between machines move the decimals, not the words. How often each rule
says `supported` or `contradicted` when nothing is there, and how often it finds an effect of the
smallest interesting size, is measured by `calibration` on each study's own design."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .config import primary_arm
from .sampling import WEIGHTED
from .statistics import (MIN_GROUPS, holm, minimum_detectable_effect, pooled_bootstrap, sample_groups,
                         sign_flip_floor, sign_flip_test)

SUPPORTED, CONTRADICTED, NO_EFFECT, INCONCLUSIVE = ("supported", "contradicted", "no effect of interesting size",
                                                    "inconclusive")
MEANINGS = {
    SUPPORTED: "the interval excludes no effect on the side the claim predicts",
    CONTRADICTED: "the interval excludes no effect on the other side",
    NO_EFFECT: "the interval lies inside plus or minus the smallest effect of interest: an effect that large is "
               "ruled out",
    INCONCLUSIVE: "neither: the design could not tell",
}
# A positive verdict: what a calibration counts as a false verdict when nothing is there.
POSITIVE = ("supported", "partly supported", "mixed", "contradicted")

# C1: the fractional crossing steps first (they rank; the integer counts tie), the optimizer's
# ground truth before plain SGD's. The first present is the primary one, as for C2 and C3.
GROUND_TRUTHS = ("update_count_frac", "update_count_sgd_frac", "update_count", "update_count_sgd")


def ranked_truths(truths) -> list[str]:
    """The ground truths the verdicts read, in order (the first is the primary one): the
    fractional crossing steps where there are any, since they rank and the integer counts tie."""
    truths = list(dict.fromkeys(truths))
    return [t for t in truths if t.endswith("_frac")] or truths

# C1 cannot call variation narrow when this share of samples never reached the level: their count
# is the cap, so the 90th percentile may sit at it.
CENSORED_LIMIT = 0.10

# C4: what a weighted sampler is compared with uniform on (paired by replicate and seed), and
# which direction is better where a verdict reads it. The paper's UC is forget quality, its UT
# model utility; `level_*` are measured at equal forgetting, the rest after the fixed budget.
COMPARED = {"forget_quality": 1, "forget_ks": -1, "model_utility": 1, "forget_prob": 0, "forget_rouge": -1,
            "forget_truth_ratio": 0, "mia_auc": 0, "steps_to_forget": -1, "forget_progress": 1, "forget_auc": 1,
            "level_model_utility": 1, "level_forget_quality": 1, "level_forget_ks": -1, "level_forget_rouge": -1,
            "level_step": -1}
# Completeness by the data's kind: TOFU's forget quality needs paraphrased and wrong answers; on
# text data the verdict reads verbatim memorisation of the forget set (MUSE's VerbMem: lower is
# more complete) in its place.
COMPLETENESS = {"qa": "forget_quality", "text": "forget_rouge"}


def completeness_metric(runs: pd.DataFrame) -> str:
    """What C4 reads as completeness in an unlearning table: forget quality, or on text data
    (no truth ratios, so no forget quality) the forget set's verbatim ROUGE-L."""
    has_quality = "forget_quality" in runs and runs["forget_quality"].notna().any()
    return COMPLETENESS["qa"] if has_quality or not len(runs) else COMPLETENESS["text"]


def censored_column(truth: str) -> str:
    """update_count[_sgd][_frac] -> censored[_sgd]."""
    return truth.replace("_frac", "").replace("update_count", "censored")


def effect_verdict(low: float, high: float, smallest: float, direction: int = 1) -> str:
    """One of the four words from an interval: `direction` +1 / -1 is the side the claim predicts;
    0: any difference is the claim (C3), and `contradicted` does not apply."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return INCONCLUSIVE
    if low > 0 or high < 0:
        side = 1 if low > 0 else -1
        return SUPPORTED if direction == 0 or side == direction else CONTRADICTED
    if -smallest < low and high < smallest:
        return NO_EFFECT
    return INCONCLUSIVE


def scope(n_groups: int, n_samples: int, unit: str = "groups", min_groups: int = MIN_GROUPS) -> str:
    """The population a per-sample verdict speaks about: with fewer groups than `min_groups`,
    only these groups ('within these 2 authors')."""
    if n_groups < min_groups and n_groups < n_samples:
        return f"within these {n_groups} {unit}"
    return ""


def spread(counts, axis=-1):
    """90th / 10th percentile of required updates (the 10th floored at 1 update)."""
    q10, q90 = np.percentile(counts, [10, 90], axis=axis)
    return q90 / np.maximum(q10, 1)


# --- C1 ---------------------------------------------------------------------------------------

def spread_verdict(low: float, high: float, threshold: float, censored_share: float) -> str:
    """C1 against its smallest interesting spread (`threshold`): supported when the whole
    interval lies above it; no effect of interesting size (here one-sided: a spread below the
    threshold) when it lies below and fewer
    than CENSORED_LIMIT of the samples are censored (their count is the cap, which shrinks the
    90th percentile's room); else inconclusive."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return INCONCLUSIVE
    if low > threshold:
        return SUPPORTED
    if high < threshold and censored_share < CENSORED_LIMIT:
        return NO_EFFECT
    return INCONCLUSIVE


def c1_spread(scores: pd.DataFrame, *, threshold: float, n_resamples: int, alpha: float, seed: int = 0,
              min_groups: int = MIN_GROUPS) -> pd.DataFrame:
    """Per ground truth: the 90th/10th percentile ratio of required updates per replicate and
    pooled (mean over replicates, crossed bootstrap CI resampling samples as their groups
    allow), the censored share, and the verdict of `spread_verdict`."""
    rows = []
    groups = sample_groups(scores)
    for truth in [t for t in GROUND_TRUTHS if t in scores]:
        wide = scores.pivot(index="replicate", columns="sample_id", values=truth)
        censored = scores[censored_column(truth)].astype(bool) if censored_column(truth) in scores else \
            pd.Series(False, index=scores.index)
        blocks = [(str(r), wide.loc[[r]].to_numpy(float)) for r in wide.index] + [("pooled", wide.to_numpy(float))]
        for replicate, counts in blocks:
            res = pooled_bootstrap(spread, [counts], n_resamples=n_resamples, alpha=alpha, seed=seed, groups=groups,
                                   min_groups=min_groups, null=threshold)
            part = censored if replicate == "pooled" else censored[scores.replicate == int(replicate)]
            share = float(part.mean())
            rows.append({"replicate": replicate, "ground_truth": truth, "n": counts.shape[1],
                         "min": float(counts.min()), "p10": float(np.percentile(counts, 10)),
                         "median": float(np.median(counts)), "p90": float(np.percentile(counts, 90)),
                         "max": float(counts.max()), "spread": res["estimate"], "ci_low": res["ci_low"],
                         "ci_high": res["ci_high"], "censored_share": share, "resampling": res["scheme"],
                         "verdict": spread_verdict(res["ci_low"], res["ci_high"], threshold, share)})
    return pd.DataFrame(rows)


def c1_verdict(spread_table: pd.DataFrame, replicate: str = "pooled", truth: str | None = None) -> str:
    """C1 reads the primary ground truth (the first of GROUND_TRUTHS present), as C2 and C3 do;
    `truth` names another."""
    rows = spread_table[spread_table.replicate == replicate]
    if not len(rows):
        return INCONCLUSIVE
    primary = truth or next(t for t in GROUND_TRUTHS if t in set(rows.ground_truth))
    return rows[rows.ground_truth == primary].verdict.iloc[0]


def icc1(values: np.ndarray, groups: np.ndarray, alpha: float = 0.05) -> dict:
    """Share of the variance between groups as ICC(1) of the one-way random-effects layout, with
    its F-based interval (Searle's, exact for balanced normal data): unlike eta squared, which
    averages (G - 1) / (n - 1) when groups do not differ at all, ICC(1) is about 0 then."""
    from scipy import stats

    by = [values[groups == g] for g in dict.fromkeys(groups.tolist())]
    n, G = len(values), len(by)
    sizes = np.array([len(b) for b in by])
    k0 = (n - (sizes ** 2).sum() / n) / (G - 1)
    if np.ptp(values) == 0 or (sizes < 2).all():
        return {"icc": float("nan"), "icc_ci_low": float("nan"), "icc_ci_high": float("nan"),
                "eta_squared": float("nan"), "eta_squared_no_effect": (G - 1) / (n - 1), "anova_p": float("nan")}
    F, p = stats.f_oneway(*by)
    icc, low, high = icc_from_f(F, G - 1, n - G, k0, alpha)
    total = ((values - values.mean()) ** 2).sum()
    between = sum(len(b) * (b.mean() - values.mean()) ** 2 for b in by)
    return {"icc": icc, "icc_ci_low": low, "icc_ci_high": high,
            "eta_squared": float(between / total), "eta_squared_no_effect": (G - 1) / (n - 1), "anova_p": float(p)}


def icc_from_f(F: float, df_between: int, df_within: int, group_size: float, alpha: float = 0.05
               ) -> tuple[float, float, float]:
    """ICC(1) from a one-way ANOVA's F ratio and its F-based interval (Searle's): (icc, low, high).
    Infinite F (no spread within groups): 1."""
    from scipy import stats

    to_icc = lambda f: 1.0 if np.isinf(f) else (f - 1) / (f + group_size - 1)  # noqa: E731
    low = F / stats.f.ppf(1 - alpha / 2, df_between, df_within)
    high = F / stats.f.ppf(alpha / 2, df_between, df_within)
    return float(to_icc(F)), float(to_icc(low)), float(to_icc(high))


def difficulty_by_group(scores: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Is difficulty a property of the sample or of its group (its author, its person)? Per
    ground truth, on the counts averaged over replicates (the replicates share their samples, so
    one test, not one per replicate): ICC(1) with its interval (about 0 when groups do not differ),
    raw eta squared beside its expectation under no group effect, and the Kruskal-Wallis test of
    equal distributions across groups (scipy). Empty without groups."""
    from scipy.stats import kruskal

    columns = ["ground_truth", "n_groups", "n", "icc", "icc_ci_low", "icc_ci_high", "eta_squared",
               "eta_squared_no_effect", "kruskal_p"]
    if "group" not in scores or scores.group.nunique() < 2 or scores.group.nunique() == scores.sample_id.nunique():
        return pd.DataFrame(columns=columns)
    rows = []
    for truth in [t for t in GROUND_TRUTHS if t in scores]:
        mean = scores.groupby(["sample_id", "group"], as_index=False)[truth].mean()
        y, g = mean[truth].to_numpy(float), mean.group.astype(str).to_numpy()
        by = [y[g == k] for k in dict.fromkeys(g.tolist())]
        p = float(kruskal(*by).pvalue) if np.ptp(y) > 0 else float("nan")
        rows.append({"ground_truth": truth, "n_groups": len(by), "n": len(y), **icc1(y, g, alpha), "kruskal_p": p})
    return pd.DataFrame(rows)[columns]


# --- C2, C3 -----------------------------------------------------------------------------------

def c2_verdict(low: float, high: float, smallest_rho: float) -> str:
    """C2: rho(MRD, required updates) > 0 is the claim."""
    return effect_verdict(low, high, smallest_rho, +1)


def c3_verdict(family: pd.DataFrame, alpha: float, smallest_rho: float) -> str:
    """C3 on one ground truth's family of characteristics (rows with p_holm, ci_low, ci_high):
    supported when some characteristic correlates with it after Holm's correction (either sign:
    C3 predicts a difference, not its direction); no effect of interesting size when every
    characteristic's interval lies inside +/- smallest_rho (an intersection-union test: each
    equivalence read off the 1 - alpha interval, so at alpha / 2 per side; no correction needed);
    else inconclusive. A characteristic without an interval (constant within every group, so it
    has no within-group rank) cannot be tested here and does not count."""
    if not len(family):
        return "not tested (no known factors or characteristics)"
    if (family.p_holm < alpha).any():
        return SUPPORTED
    testable = family[np.isfinite(family.ci_low) & np.isfinite(family.ci_high)]
    if len(testable) and ((testable.ci_low > -smallest_rho) & (testable.ci_high < smallest_rho)).all():
        return NO_EFFECT
    return INCONCLUSIVE


# --- C4 ---------------------------------------------------------------------------------------

def comparisons(arms: list[str]) -> list[tuple[str, str, str]]:
    """(arm, what it is compared with, family) of every comparison: each non-uniform arm against
    uniform, and an arm driven by another score (`mrd@loss`) also against the same sampler driven
    by MRD (`mrd`), where both ran. Family `paper`: the paper's MRD samplers against uniform (C4
    reads these); `field`: the field's curricula and the other scores (the report's "MRD against
    the field"). Holm's correction runs within each family."""
    out = []
    for arm in arms:
        if arm == "uniform":
            continue
        sampler, _, score = arm.partition("@")
        out.append((arm, "uniform", "paper" if sampler in WEIGHTED and not score else "field"))
        if score and sampler in arms:
            out.append((arm, sampler, "field"))
    return out


def _pair_metric(paired: pd.DataFrame, metric: str, alpha: float) -> dict:
    """One metric of one comparison: the paired differences' sign-flip test and interval. Steps
    to forget are censored at the budget: their mean difference is the paired restricted mean,
    not estimable when no run of either arm crossed. `level_*` are compared only over pairs in
    which both runs reached the level (their count is `level_n_pairs`)."""
    if metric.startswith("level_") and "level_reached" in paired:
        paired = paired[paired.level_reached.astype(bool) & paired.level_reached_versus.astype(bool)]
    if metric == "steps_to_forget" and "steps_censored" in paired and \
            paired.steps_censored.astype(bool).all() and paired.steps_censored_versus.astype(bool).all():
        paired = paired.iloc[:0]  # nobody reached the level: no difference to estimate
    d = paired[metric].astype(float).to_numpy() - paired[f"{metric}_versus"].astype(float).to_numpy()
    res = sign_flip_test(d, alpha=alpha)
    res["sd"] = float(np.nanstd(d, ddof=1)) if np.isfinite(d).sum() > 1 else float("nan")
    return res


def compare_samplers(table: pd.DataFrame, *, alpha: float = 0.05, power: float = 0.8,
                     smallest: dict[str, float] | None = None, completeness: str = "forget_quality",
                     metrics: tuple[str, ...] | None = None, per_replicate: bool = True) -> pd.DataFrame:
    """Every sampler arm against what `comparisons` pairs it with, per algorithm: mean paired
    difference (arm - other, same replicate and seed) of every metric in COMPARED, with the
    sign-flip test's interval, p-value and floor (`statistics.sign_flip_test`); pooled (the units
    are the replicate x seed pairs: the test conditions on the fine-tuned models, within which
    the runs of different seeds are independent) and per replicate (its seeds). Holm's correction:
    one family per comparison family over every metric a verdict reads (`completeness` and
    model utility of every pair), and per metric over the pairs for the others. `*_mde`: the
    minimum detectable effect at `power` and Holm's first level (alpha / family size), and, for
    the verdict's metrics, `*_mde_ratio`: that effect over the smallest effect of interest.
    `metrics` and `per_replicate` narrow the work (the calibration needs the verdict's metrics,
    pooled, only)."""
    smallest = smallest or {}
    verdict_metrics = (completeness, "model_utility")
    compared = [m for m in COMPARED if metrics is None or m in metrics or m in verdict_metrics]
    rows = []
    blocks = [("pooled", table)] + ([(str(r), part) for r, part in table.groupby("replicate")] if per_replicate else [])
    pairs = comparisons(list(dict.fromkeys(table.sampler)))
    for replicate, block in blocks:
        block_rows = []
        for algorithm, runs in block.groupby("algorithm"):
            for arm, versus, family in pairs:
                group, base = runs[runs.sampler == arm], runs[runs.sampler == versus]
                if not len(group) or not len(base):
                    continue
                paired = group.merge(base, on=["replicate", "seed"], suffixes=("", "_versus"))
                row = {"replicate": replicate, "algorithm": algorithm, "sampler": arm, "versus": versus,
                       "family": family, "n_pairs": len(paired),
                       "unit": "pair (replicate x seed)" if replicate == "pooled" else "seed"}
                for metric in compared:
                    res = _pair_metric(paired, metric, alpha)
                    row.update({f"{metric}_diff": res["mean"], f"{metric}_ci_low": res["ci_low"],
                                f"{metric}_ci_high": res["ci_high"], f"{metric}_p": res["p_value"],
                                f"{metric}_sd": res["sd"], f"{metric}_n": res["n_units"]})
                row["p_floor"] = sign_flip_floor(len(paired))
                row["n_units"] = len(paired)
                row["level_n_pairs"] = row.get("level_model_utility_n", np.nan)
                row.update({"reached_share": float((~group.steps_censored.astype(bool)).mean()),
                            "reached_share_uniform": float((~base.steps_censored.astype(bool)).mean())})
                block_rows.append(row)
        frame = pd.DataFrame(block_rows)
        if len(frame):
            for metric in compared:
                frame[f"{metric}_p_holm"] = np.nan
            for _, fam in frame.groupby("family"):
                joint = holm(np.concatenate([fam[f"{m}_p"].to_numpy() for m in verdict_metrics]))
                for i, m in enumerate(verdict_metrics):
                    frame.loc[fam.index, f"{m}_p_holm"] = joint[i * len(fam):(i + 1) * len(fam)]
                for metric in [m for m in compared if m not in verdict_metrics]:
                    frame.loc[fam.index, f"{metric}_p_holm"] = holm(fam[f"{metric}_p"])
                family_size = int(np.isfinite(np.concatenate([fam[f"{m}_p"] for m in verdict_metrics])).sum())
                frame.loc[fam.index, "holm_family_size"] = family_size
                level = alpha / max(family_size, 1)
                for metric in compared:  # infinite where the test's floor lies above the level
                    frame.loc[fam.index, f"{metric}_mde"] = [
                        minimum_detectable_effect(sd, int(n), alpha=level, power=power)
                        for sd, n in zip(fam[f"{metric}_sd"], fam[f"{metric}_n"])]
                for metric in verdict_metrics:
                    frame.loc[fam.index, f"{metric}_mde_ratio"] = (frame.loc[fam.index, f"{metric}_mde"]
                                                                   / smallest.get(metric, np.nan))
        rows.append(frame)
    columns = ["replicate", "algorithm", "sampler", "versus", "family", "n_pairs"]
    return pd.concat(rows, ignore_index=True) if any(len(r) for r in rows) else pd.DataFrame(columns=columns)


def _metric_word(row, metric: str, alpha: float, smallest: float) -> str:
    """better / worse (Holm-adjusted p < alpha, by the metric's better direction), equivalent
    (interval inside +/- smallest), or unclear."""
    p, diff = row[f"{metric}_p_holm"], row[f"{metric}_diff"]
    if np.isfinite(p) and p < alpha:
        return "better" if np.sign(diff) * COMPARED[metric] > 0 else "worse"
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if np.isfinite(low) and np.isfinite(high) and -smallest < low and high < smallest:
        return "equivalent"
    return "unclear"


def pair_verdict(row, alpha: float, completeness: str = "forget_quality", smallest: dict | None = None) -> str:
    """The paper claims both completeness (forget quality; `COMPLETENESS` on text data) and
    utility (model utility) improve. `smallest`: the smallest effect of interest per metric."""
    smallest = smallest or {}
    metrics = (completeness, "model_utility")
    if any(not np.isfinite(row[f"{m}_p"]) for m in metrics):
        return INCONCLUSIVE
    words = [_metric_word(row, m, alpha, smallest.get(m, 0.0)) for m in metrics]
    if words == ["better", "better"]:
        return SUPPORTED
    if "better" in words or "worse" in words:
        return mixed_word("better" in words, "worse" in words)
    if words == ["equivalent", "equivalent"]:
        return NO_EFFECT
    return INCONCLUSIVE


def mixed_word(better: bool, worse: bool) -> str:
    """C4's word where something improved or worsened but not everything improved."""
    return "mixed" if better and worse else "partly supported" if better else CONTRADICTED


def c4_verdict(pair_verdicts: list[str]) -> str:
    if not pair_verdicts:
        return "not tested (no weighted sampler)"
    if all(v == SUPPORTED for v in pair_verdicts):
        return SUPPORTED
    better = any(v in (SUPPORTED, "partly supported") for v in pair_verdicts)
    worse = any(v in (CONTRADICTED, "mixed") for v in pair_verdicts)
    if better or worse:
        return mixed_word(better, worse)
    if all(v == NO_EFFECT for v in pair_verdicts):
        return NO_EFFECT
    return INCONCLUSIVE


# --- C4's primary comparisons: C4a efficiency, C4b effectiveness at equal forgetting -------------

C4_PARTS = {"C4a": "efficiency", "C4b": "effectiveness"}
C4_PART_TEXT = {"C4a": "C4a MRD-weighted sampling forgets in fewer updates",
                "C4b": "C4b MRD-weighted sampling improves completeness and utility at equal forgetting"}


def c4_primary(stats_cfg: dict, algorithms: list[str], samplers: list[str], budgets: dict[str, int],
               completeness: str) -> dict:
    """The declared primary comparison (`statistics.c4`): its algorithm, its sampler against
    uniform, and per part (C4a, C4b) its metrics with their smallest effects of interest. C4a's
    is `efficiency_gain` of the budget T (fewer updates; as much more area under the forgetting
    curve, which is normalised by T), C4b's the paper's gains."""
    c4, gains = stats_cfg["c4"], stats_cfg["paper_gains"]
    chosen = primary_arm(c4, algorithms, samplers)
    if chosen is None:
        return {}
    algorithm, sampler = chosen
    gain = c4["efficiency_gain"]
    smallest = {"steps_to_forget": gain * budgets.get(algorithm, float("nan")), "forget_auc": gain,
                "forget_progress": gain, f"level_{completeness}": gains["forget_quality"],
                "level_model_utility": gains["model_utility"]}
    parts = {"C4a": list(c4["efficiency"]),
             "C4b": [m.replace("completeness", completeness) for m in c4["effectiveness"]]}
    return {"algorithm": algorithm, "sampler": sampler, "parts": parts, "seeds": c4.get("seeds"),
            "smallest": {m: smallest[m] for ms in parts.values() for m in ms}}


def primary_of_runs(stats_cfg: dict, runs: pd.DataFrame, completeness: str) -> dict:
    """`c4_primary` for a finished study: its algorithms and budgets from the runs table (empty
    when the primary comparison did not run)."""
    if not len(runs):
        return {}
    primary = c4_primary(stats_cfg, list(dict.fromkeys(runs.algorithm)), list(dict.fromkeys(runs.sampler)),
                         runs.groupby("algorithm").steps.first().to_dict(), completeness)
    if not primary:
        return {}
    arms = runs[runs.algorithm == primary["algorithm"]].sampler.unique()
    return primary if {"uniform", primary["sampler"]} <= set(arms) else {}


def primary_runs(runs: pd.DataFrame, primary: dict) -> pd.DataFrame:
    """The runs C4's primary tests read: its algorithm's uniform and weighted arms, on its seeds."""
    keep = (runs.algorithm == primary["algorithm"]) & runs.sampler.isin(["uniform", primary["sampler"]])
    if primary.get("seeds"):
        keep &= runs.seed.isin(primary["seeds"])
    return runs[keep]


def primary_tests(comparison: pd.DataFrame, primary: dict, alpha: float) -> pd.DataFrame:
    """One row per (replicate or pooled, part, metric) of the primary comparison: the paired
    difference with its interval and sign-flip p, the smallest effect of interest, and Holm's p
    over every primary test of both parts (what 'partly supported', 'mixed' and 'contradicted'
    read, and needed by 'supported', so that C4 as a whole keeps its level)."""
    rows = []
    chosen = comparison[(comparison.algorithm == primary["algorithm"]) & (comparison.sampler == primary["sampler"])
                        & (comparison.versus == "uniform")]
    for _, r in chosen.iterrows():
        family = [(part, m) for part, metrics in primary["parts"].items() for m in metrics]
        ps = [r.get(f"{m}_p", np.nan) for _, m in family]
        adjusted = holm(np.asarray(ps, dtype=float))
        for (part, m), p, p_holm in zip(family, ps, adjusted):
            rows.append({"replicate": r.replicate, "part": part, "algorithm": r.algorithm, "sampler": r.sampler,
                         "metric": m, "direction": COMPARED[m], "n_pairs": r.get(f"{m}_n", np.nan),
                         "diff": r.get(f"{m}_diff", np.nan), "ci_low": r.get(f"{m}_ci_low", np.nan),
                         "ci_high": r.get(f"{m}_ci_high", np.nan), "p": p, "p_holm": p_holm,
                         "sd": r.get(f"{m}_sd", np.nan), "smallest": primary["smallest"][m]})
    out = pd.DataFrame(rows, columns=["replicate", "part", "algorithm", "sampler", "metric", "direction", "n_pairs",
                                      "diff", "ci_low", "ci_high", "p", "p_holm", "sd", "smallest"])
    out["word"] = [_primary_word(r, alpha) for _, r in out.iterrows()]
    return out


def _primary_word(row, alpha: float) -> str:
    """better / worse at alpha (the intersection-union test's own level), equivalent, or unclear."""
    if np.isfinite(row.p) and row.p < alpha:
        return "better" if np.sign(row["diff"]) * row.direction > 0 else "worse"
    if np.isfinite(row.ci_low) and np.isfinite(row.ci_high) and -row.smallest < row.ci_low and row.ci_high < row.smallest:
        return "equivalent"
    return "unclear"


def part_verdict(tests: pd.DataFrame, alpha: float) -> str:
    """One part's verdict: supported when every test improves at alpha (intersection-union: the
    chance that the part is called supported while any of its effects is absent is at most alpha)
    and one of them at Holm's level over both parts' tests (`p_holm`), so that no verdict is given
    without a Holm rejection and C4 keeps its level however its metrics move together; otherwise
    improvements and harms counted at Holm's level."""
    if tests.empty or not np.isfinite(tests.p.astype(float)).all():
        return INCONCLUSIVE
    holm_sig = tests.p_holm.astype(float) < alpha
    if (tests.word == "better").all() and holm_sig.any():
        return SUPPORTED
    better = (holm_sig & (np.sign(tests["diff"]) * tests.direction > 0)).any()
    worse = (holm_sig & (np.sign(tests["diff"]) * tests.direction < 0)).any()
    if better or worse:
        return mixed_word(better, worse)
    if (tests.word == "equivalent").all():
        return NO_EFFECT
    return INCONCLUSIVE


def part_verdicts_from_p(parts: dict[str, list[str]], diffs: dict[str, np.ndarray], p: dict[str, np.ndarray],
                         direction: dict[str, int], alpha: float) -> dict[str, np.ndarray]:
    """`part_verdict` on simulated studies at once (studies along the first axis), from p-values
    only: per part, whether each study's part comes out supported, and whether it gives any
    positive verdict (supported, partly supported, mixed, contradicted), Holm's correction over
    every part's tests. What the calibration counts; 'no effect' needs intervals and is never a
    false verdict, so it is not told apart from 'inconclusive'."""
    family = [m for metrics in parts.values() for m in metrics]
    P = np.column_stack([p[m] for m in family])
    holm_p = np.vstack([holm(row) for row in P]) if len(P) else P
    out, column = {}, 0
    for part, metrics in parts.items():
        cols = slice(column, column + len(metrics))
        column += len(metrics)
        signs = np.column_stack([np.sign(diffs[m]) * direction[m] for m in metrics])
        rejected = (holm_p[:, cols] < alpha).any(axis=1)
        supported = ((P[:, cols] < alpha) & (signs > 0)).all(axis=1) & rejected
        out[part] = np.column_stack([supported, rejected])
    return out


def agreement(pooled: str, per_replicate: dict[str, str]) -> str:
    """'inconclusive in 3 of 3 replicates', or how the replicates split. The replicates share
    their samples (and for C4 their sampler arms' design), so the count is a description of
    stability, not independent evidence."""
    n = len(per_replicate)
    counts = pd.Series(list(per_replicate.values()), dtype=object).value_counts()
    if len(counts) == 1:
        return f"{counts.index[0]} in {n} of {n} replicates"
    ordered = [pooled] + [v for v in counts.index if v != pooled] if pooled in counts else list(counts.index)
    return ", ".join(f"{v} in {counts[v]}" for v in ordered) + f" of {n} replicates"
