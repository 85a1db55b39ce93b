"""Inference across replicates of the whole pipeline (STUDY 6): pooled estimates with CIs that see
both sources of variation (which samples, which training run), multiple-comparison correction,
paired comparisons that respect the nesting of seeds in replicates, the minimum detectable
effect, and a censoring-aware comparison of steps to forget. Tests and power come from scipy
and statsmodels; only the resampling scheme, which no library offers for crossed designs, is ours.
"""
from __future__ import annotations

import gc
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-interval (NaNs dropped; NaN bounds with fewer than two values)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1) * stats.sem(values))
    return mean, mean - half, mean + half


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment (statsmodels); NaNs stay NaN and do not count as tests."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        # statsmodels' Holm branch calls gc.collect(), which walks every live object (seconds
        # once torch is loaded); frozen objects are skipped, and unfreezing puts them back.
        gc.freeze()
        try:
            out[ok] = multipletests(p[ok], method="holm")[1]
        finally:
            gc.unfreeze()
    return out


def percentile_p_value(boot: np.ndarray) -> float:
    """Two-sided p-value of 'the statistic is 0' from bootstrap replicates, by inverting the
    percentile interval (the smallest level at which it excludes 0; never below 2 / (B + 1))."""
    boot = np.asarray(boot, dtype=float)
    boot = boot[~np.isnan(boot)]
    if not boot.size:
        return float("nan")
    tail = min((boot <= 0).sum(), (boot >= 0).sum())
    return float(min(1.0, 2 * (tail + 1) / (boot.size + 1)))


def cluster_indices(groups, n_resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Sample indices of a two-stage cluster bootstrap: draw as many groups as there are, with
    replacement, then within each drawn group as many of its samples as it has, with
    replacement (Davison & Hinkley's strategy 2). Samples of one group (one author's QA, one
    person's facts) are not independent; resampling them as if they were gives intervals too
    narrow. Without groups (None), or with every sample its own group, the ordinary bootstrap.
    Returns one index array per resample (all of length n when the groups are of equal size)."""
    labels = np.asarray(groups)
    members = [np.flatnonzero(labels == g) for g in dict.fromkeys(labels.tolist())]
    picked = rng.integers(0, len(members), size=(n_resamples, len(members)))
    sizes = np.array([len(m) for m in members])
    if (sizes == sizes[0]).all():  # equal sizes: one (B, n) draw
        table = np.stack(members)  # (G, m)
        within = rng.integers(0, sizes[0], size=(n_resamples, len(members), sizes[0]))
        rows = table[picked[:, :, None], within]
        return list(rows.reshape(n_resamples, -1))
    return [np.concatenate([members[g][rng.integers(0, sizes[g], size=sizes[g])] for g in row]) for row in picked]


def sample_groups(scores: pd.DataFrame) -> np.ndarray | None:
    """Each sample's group in sample_id order (the columns of a replicate x sample pivot), or
    None where every sample stands alone (the cluster bootstrap is then the sample bootstrap)."""
    if "group" not in scores:
        return None
    groups = scores.drop_duplicates("sample_id").sort_values("sample_id").group.astype(str).to_numpy()
    return groups if len(set(groups)) < len(groups) else None


def pooled_bootstrap(statistic: Callable, arrays: list[np.ndarray], *, n_resamples: int = 2000, alpha: float = 0.05,
                     seed: int = 0, vectorized: bool = True, groups=None) -> dict:
    """Pooled estimate of a per-replicate statistic: its mean over replicates, each computed on
    the same samples (the forget set is shared, only the training seed differs).

    `arrays` are (R, n) arrays (replicate x sample, samples aligned); `statistic(*arrays, axis=-1)`
    maps (..., n) arrays to (...). The CI is a percentile bootstrap that resamples replicates and
    samples independently, with the same sample indices in every drawn replicate (a crossed
    design: Owen's pigeonhole bootstrap, conservative), so it covers both the variation between
    training runs and the variation between samples. With one replicate it is the ordinary
    sample bootstrap. `groups` (one label per sample): samples are drawn by the two-stage
    cluster bootstrap of `cluster_indices`. `between_sd` is the standard deviation of the
    per-replicate values."""
    arrays = [np.atleast_2d(np.asarray(a, dtype=float)) for a in arrays]
    R, n = arrays[0].shape
    rng = np.random.default_rng(seed)
    per_replicate = _apply(statistic, arrays, vectorized)
    reps = rng.integers(0, R, size=(n_resamples, R))
    if groups is None:
        samples = rng.integers(0, n, size=(n_resamples, n))
    else:
        draws = cluster_indices(groups, n_resamples, rng)
        equal = len({len(d) for d in draws}) == 1
        samples = np.stack(draws) if equal else draws
        vectorized = vectorized and equal
    if vectorized:
        boot = statistic(*[a[reps[:, :, None], samples[:, None, :]] for a in arrays], axis=-1).mean(axis=1)
    else:
        boot = np.array([np.mean([statistic(*[a[r, s] for a in arrays]) for r in rr]) for rr, s in zip(reps, samples)])
    low, high = np.nanpercentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"estimate": float(np.mean(per_replicate)), "ci_low": float(low), "ci_high": float(high),
            "p_value": percentile_p_value(boot),
            "between_sd": float(np.std(per_replicate, ddof=1)) if R > 1 else float("nan"),
            "per_replicate": [float(v) for v in per_replicate], "n_replicates": R, "n": n}


def _apply(statistic, arrays, vectorized):
    if vectorized:
        return np.atleast_1d(statistic(*arrays, axis=-1))
    return np.array([statistic(*[a[r] for a in arrays]) for r in range(arrays[0].shape[0])])


def nested_mean_diff(frame: pd.DataFrame, value: str, *, unit: str = "replicate", alpha: float = 0.05) -> dict:
    """Mean of paired differences `value` (one row per replicate x seed pair) with a CI that
    respects the nesting of seeds in replicates: the t-interval over the replicate means (for a
    balanced random-intercept model exact whatever the between-replicate variance; df = R - 1).
    With a single replicate the unit is the seed, and the interval describes that training run
    only. `unit_sd` is the standard deviation of the unit means, which the minimum detectable
    effect scales. Unit means without spread (a discrete metric such as TOFU's KS p-value over 40
    samples often repeats exactly across 2-3 seeds) leave the t-test no variance to test against:
    its p would be 0, a certainty that 2 identical values do not give; the exact Wilcoxon
    signed-rank test (scipy) takes over (2 / 2^n for n identical nonzero means: 0.5 for 2)."""
    data = frame[[unit, value]].dropna()
    if data[unit].nunique() < 2:
        unit = "seed" if "seed" in frame else unit
        data = frame[[unit, value]].dropna()
    means = data.groupby(unit)[value].mean().to_numpy()
    mean, low, high = mean_ci(means, 1 - alpha)
    p = float("nan")
    if means.size >= 2:
        if not np.allclose(means, means[0], rtol=1e-9, atol=1e-12):
            p = float(stats.ttest_1samp(means, 0.0).pvalue)
        elif np.allclose(means, 0.0, atol=1e-12):
            p = 1.0  # no difference at all (a metric at its floor under both samplers)
        else:
            p = float(stats.wilcoxon(means).pvalue)
    return {"mean": mean, "ci_low": low, "ci_high": high, "p_value": p, "unit": unit, "n_units": int(means.size),
            "n_pairs": int(len(data)), "unit_sd": float(np.std(means, ddof=1)) if means.size > 1 else float("nan")}


def minimum_detectable_effect(unit_sd: float, n_units: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided one-sample t-test on `n_units` unit means
    (sd `unit_sd`) detects with probability `power` at level `alpha` (statsmodels' solver)."""
    from statsmodels.stats.power import TTestPower

    if n_units < 2 or not np.isfinite(unit_sd) or unit_sd == 0:
        return float("nan")  # no spread: the metric sits at a floor or ceiling, nothing to scale
    d = TTestPower().solve_power(effect_size=None, nobs=n_units, alpha=alpha, power=power, alternative="two-sided")
    return float(np.atleast_1d(d)[0] * unit_sd)


def logrank_p(times_a, censored_a, times_b, censored_b) -> float:
    """Two-sided log-rank test (scipy) of two right-censored samples of steps to forget."""
    def data(times, censored):
        times, censored = np.asarray(times, dtype=float), np.asarray(censored, dtype=bool)
        return stats.CensoredData.right_censored(times, censored)

    if not len(times_a) or not len(times_b):
        return float("nan")
    if np.all(censored_a) and np.all(censored_b):
        return 1.0  # nobody reached the level: no event to compare
    return float(stats.logrank(data(times_a, censored_a), data(times_b, censored_b)).pvalue)
