"""The verdict on each claim (STUDY 1), pooled over replicates and per replicate, as data.

A verdict is a short, fixed phrase from the tables' confidence intervals and corrected p-values,
never from a point estimate near a threshold, so that the small floating-point differences
between machines move the decimals, not the words. The report and metrics.json both read them
from here."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .sampling import WEIGHTED
from .statistics import (holm, logrank_p, minimum_detectable_effect, nested_mean_diff, pooled_bootstrap,
                         sample_groups)

GROUND_TRUTHS = ("update_count", "update_count_sgd")

# C4: what a weighted sampler is compared with uniform on (paired by replicate and seed), and
# which direction is better where a verdict reads it. The paper's UC is forget quality, its UT
# model utility; `level_*` are measured at equal forgetting, the rest after the fixed budget.
COMPARED = {"forget_quality": 1, "forget_ks": -1, "model_utility": 1, "forget_prob": 0, "forget_rouge": -1,
            "forget_truth_ratio": 0, "mia_auc": 0, "steps_to_forget": -1, "forget_progress": 1, "forget_auc": 1,
            "level_model_utility": 1, "level_forget_quality": 1, "level_forget_ks": -1, "level_step": -1}
# Completeness by the data's kind: TOFU's forget quality needs paraphrased and wrong answers; on
# text data the verdict reads verbatim memorisation of the forget set (MUSE's VerbMem: lower is
# more complete) in its place.
COMPLETENESS = {"qa": "forget_quality", "text": "forget_rouge"}


def spread(counts, axis=-1):
    """90th / 10th percentile of required updates (the 10th floored at 1 update)."""
    q10, q90 = np.percentile(counts, [10, 90], axis=axis)
    return q90 / np.maximum(q10, 1)


# --- C1 ---------------------------------------------------------------------------------------

def c1_spread(scores: pd.DataFrame, *, threshold: float, n_resamples: int, alpha: float, seed: int = 0) -> pd.DataFrame:
    """Per ground truth: the 90th/10th percentile ratio of required updates per replicate and
    pooled (mean over replicates, crossed bootstrap CI), the censored share, and whether the CI
    lies above (`wide`), below (`narrow`) or across (`unclear`) the threshold."""
    rows = []
    groups = sample_groups(scores)
    for truth in [t for t in GROUND_TRUTHS if t in scores]:
        wide = scores.pivot(index="replicate", columns="sample_id", values=truth)
        censored = scores[truth.replace("update_count", "censored")].astype(bool)
        blocks = [(str(r), wide.loc[[r]].to_numpy(float)) for r in wide.index] + [("pooled", wide.to_numpy(float))]
        for replicate, counts in blocks:
            res = pooled_bootstrap(spread, [counts], n_resamples=n_resamples, alpha=alpha, seed=seed, groups=groups)
            part = censored if replicate == "pooled" else censored[scores.replicate == int(replicate)]
            rows.append({"replicate": replicate, "ground_truth": truth, "n": counts.shape[1],
                         "min": float(counts.min()), "p10": float(np.percentile(counts, 10)),
                         "median": float(np.median(counts)), "p90": float(np.percentile(counts, 90)),
                         "max": float(counts.max()), "spread": res["estimate"], "ci_low": res["ci_low"],
                         "ci_high": res["ci_high"], "censored_share": float(part.mean()),
                         "variation": "wide" if res["ci_low"] >= threshold else
                         "narrow" if res["ci_high"] < threshold else "unclear"})
    return pd.DataFrame(rows)


def difficulty_by_group(scores: pd.DataFrame) -> pd.DataFrame:
    """Is difficulty a property of the sample or of its group (its author, its person)? Per
    ground truth and replicate: the share of the variance of the count that lies between groups
    (eta squared of a one-way layout, SS_between / SS_total) and the Kruskal-Wallis test of equal
    distributions across groups (scipy); pooled: the mean share and the Holm-adjusted largest p
    over the replicates. Empty without groups."""
    from scipy.stats import kruskal

    if "group" not in scores or scores.group.nunique() < 2 or scores.group.nunique() == scores.sample_id.nunique():
        return pd.DataFrame(columns=["replicate", "ground_truth", "n_groups", "between_share", "kruskal_p"])
    rows = []
    for truth in [t for t in GROUND_TRUTHS if t in scores]:
        per = []
        for replicate, part in scores.groupby("replicate"):
            y = part[truth].to_numpy(float)
            by = [g[truth].to_numpy(float) for _, g in part.groupby("group")]
            total = ((y - y.mean()) ** 2).sum()
            between = sum(len(b) * (b.mean() - y.mean()) ** 2 for b in by)
            p = float(kruskal(*by).pvalue) if np.ptp(y) > 0 else float("nan")
            per.append({"replicate": str(replicate), "ground_truth": truth, "n_groups": len(by),
                        "between_share": float(between / total) if total > 0 else float("nan"), "kruskal_p": p})
        rows += per
        rows.append({"replicate": "pooled", "ground_truth": truth, "n_groups": per[0]["n_groups"],
                     "between_share": float(np.nanmean([r["between_share"] for r in per])),
                     "kruskal_p": float(np.nanmax(holm([r["kruskal_p"] for r in per])))
                     if any(np.isfinite(r["kruskal_p"]) for r in per) else float("nan")})
    return pd.DataFrame(rows)


def c1_verdict(variation: list[str]) -> str:
    if variation and all(v == "wide" for v in variation):
        return "supported"
    if "wide" in variation:
        return "partly supported"
    if variation and all(v == "narrow" for v in variation):
        return "not supported"
    return "inconclusive"


# --- C2, C3 -----------------------------------------------------------------------------------

def ci_verdict(low: float, high: float) -> str:
    """C2: rho(MRD, required updates) > 0 is the claim."""
    if np.isnan(low) or np.isnan(high):
        return "inconclusive"
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "not supported"


def c3_verdict(factor_rows: pd.DataFrame, alpha: float) -> str:
    """Supported when some known factor or sample characteristic correlates with the ground
    truth after Holm's correction
    over the factors (the rows of one ground truth: the primary one, as for C2)."""
    if not len(factor_rows):
        return "not tested (no known factors or characteristics)"
    return "supported" if (factor_rows.p_holm < alpha).any() else "not supported"


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


def compare_samplers(table: pd.DataFrame, *, alpha: float = 0.05, power: float = 0.8) -> pd.DataFrame:
    """Every sampler arm against what `comparisons` pairs it with, per algorithm: mean paired
    difference (arm - other, same replicate and seed) of every metric in COMPARED with its CI,
    p-value, Holm-adjusted p-value (over the algorithm x arm pairs of its family) and minimum
    detectable effect at `power`; pooled over replicates (unit: the replicate) and per replicate
    (unit: the seed). Steps to forget are right-censored at the budget, so their mean is the
    restricted mean, and a log-rank test (`steps_logrank_p`) compares them as censored times."""
    rows = []
    blocks = [("pooled", table)] + [(str(r), part) for r, part in table.groupby("replicate")]
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
                       "family": family, "n_pairs": len(paired)}
                for metric in COMPARED:
                    diff = paired.assign(d=paired[metric].astype(float) - paired[f"{metric}_versus"].astype(float))
                    res = nested_mean_diff(diff, "d", alpha=alpha)
                    row.update({f"{metric}_diff": res["mean"], f"{metric}_ci_low": res["ci_low"],
                                f"{metric}_ci_high": res["ci_high"], f"{metric}_p": res["p_value"],
                                f"{metric}_mde": minimum_detectable_effect(res["unit_sd"], res["n_units"],
                                                                           alpha=alpha, power=power)})
                row.update({"unit": res["unit"], "n_units": res["n_units"],
                            "reached_share": float((~group.steps_censored.astype(bool)).mean()),
                            "reached_share_uniform": float((~base.steps_censored.astype(bool)).mean()),
                            "steps_logrank_p": logrank_p(group.steps_to_forget, group.steps_censored.astype(bool),
                                                         base.steps_to_forget, base.steps_censored.astype(bool))})
                block_rows.append(row)
        frame = pd.DataFrame(block_rows)
        if len(frame):
            for metric in [*COMPARED, "steps_logrank"]:
                frame[f"{metric}_p_holm"] = np.nan
                for _, family in frame.groupby("family"):
                    frame.loc[family.index, f"{metric}_p_holm"] = holm(family[f"{metric}_p"])
        rows.append(frame)
    columns = ["replicate", "algorithm", "sampler", "versus", "family", "n_pairs"]
    return pd.concat(rows, ignore_index=True) if any(len(r) for r in rows) else pd.DataFrame(columns=columns)


def _direction(row, metric: str, alpha: float) -> int:
    """+1 / -1: the sampler is better / worse than uniform on `metric` after Holm; 0: no detectable difference."""
    p, diff = row[f"{metric}_p_holm"], row[f"{metric}_diff"]
    if np.isnan(p) or p >= alpha:
        return 0
    return int(np.sign(diff) * COMPARED[metric])


def pair_verdict(row, alpha: float, completeness: str = "forget_quality") -> str:
    """The paper claims both completeness (forget quality; `COMPLETENESS` on text data) and
    utility (model utility) improve."""
    metrics = (completeness, "model_utility")
    if any(np.isnan(row[f"{m}_p"]) for m in metrics):
        return "inconclusive"
    fq, mu = (_direction(row, m, alpha) for m in metrics)
    if fq > 0 and mu > 0:
        return "supported"
    if fq * mu < 0:
        return "mixed"
    if fq + mu > 0:
        return "partly supported"
    if fq + mu < 0:
        return "contradicted"
    return "not supported"


def c4_verdict(pair_verdicts: list[str]) -> str:
    if not pair_verdicts:
        return "not tested (no weighted sampler)"
    if all(v == "supported" for v in pair_verdicts):
        return "supported"
    better = any(v in ("supported", "partly supported") for v in pair_verdicts)
    worse = any(v in ("contradicted", "mixed") for v in pair_verdicts)
    if better and worse:
        return "mixed"
    if better:
        return "partly supported"
    if worse:
        return "contradicted"
    if all(v == "inconclusive" for v in pair_verdicts):
        return "inconclusive"
    return "not supported"


def agreement(pooled: str, per_replicate: dict[str, str]) -> str:
    """'not supported in 3 of 3 replicates', or how the replicates split."""
    n = len(per_replicate)
    counts = pd.Series(list(per_replicate.values()), dtype=object).value_counts()
    if len(counts) == 1:
        return f"{counts.index[0]} in {n} of {n} replicates"
    ordered = [pooled] + [v for v in counts.index if v != pooled] if pooled in counts else list(counts.index)
    return ", ".join(f"{v} in {counts[v]}" for v in ordered) + f" of {n} replicates"
