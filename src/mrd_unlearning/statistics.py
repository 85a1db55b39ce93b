"""Inference across replicates of the whole pipeline: pooled estimates with CIs that see both
sources of variation (which samples, which training run), resampling that fits the number of
groups the samples come in, multiple-comparison correction, exact sign-flip tests for paired
differences, and the minimum detectable effect at the level a decision is made. Tests and power
come from scipy and statsmodels; the resampling schemes, which no library offers for crossed and
grouped designs, are ours.

Every bootstrap p-value here is read from the same resamples as its interval, so the two cannot
disagree: the percentile interval at level 1 - alpha excludes 0 exactly when p < alpha.
"""
from __future__ import annotations

import functools
import gc
import math
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

# Below this many groups, the groups are not a sample of a population: inference conditions on
# them (resampling within groups, statistics within groups) and the report names them. From 10
# on, the sign-flip test over groups can reach Holm's first level in a family of 10 (2 / 2^10).
MIN_GROUPS = 10
# Monte Carlo stability: a bootstrap p-value closer than this many standard errors to a level a
# decision compares it with is recomputed on more resamples (up to MAX_RESAMPLE_FACTOR times as many).
MC_SE_MARGIN = 3.0
MAX_RESAMPLE_FACTOR = 16


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


# --- the bootstrap -------------------------------------------------------------------------------

def percentile_interval(boot: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, each bound an order statistic (no
    interpolation), so that it excludes 0 exactly when `bootstrap_p` < alpha."""
    boot = np.asarray(boot, dtype=float)
    boot = boot[~np.isnan(boot)]
    if not boot.size:
        return float("nan"), float("nan")
    low = np.quantile(boot, alpha / 2, method="inverted_cdf")
    high = -np.quantile(-boot, alpha / 2, method="inverted_cdf")
    return float(low), float(high)


# The values a statistic can take, for the few-groups spread (`pooled_bootstrap`'s `bounds`).
UNBOUNDED = (-math.inf, math.inf)
CORRELATION = (-1.0, 1.0)


def few_groups_scale(n_groups: int, alpha: float) -> float:
    """How far a cluster bootstrap's resamples are spread about the estimate before its interval
    and p-value are read: over G groups the percentile interval runs short (its spread is the
    plug-in variance, divided by G not G - 1, with normal not t tails), which put C1's false 'no
    effect' at its threshold above alpha with 10 groups. sqrt(G / (G - 1)) t(G - 1) / z, the
    small-sample correction of a cluster-robust interval; 1.22 at 10 groups, 1.04 at 50."""
    G = max(int(n_groups), 2)
    q = 1 - alpha / 2
    return float(math.sqrt(G / (G - 1)) * stats.t.ppf(q, G - 1) / stats.norm.ppf(q))


def _spread_for_few_groups(boot: np.ndarray, estimate, groups, scheme: str, alpha: float,
                           bounds: tuple[float, float]) -> np.ndarray:
    """The resamples `few_groups_scale` spreads about the estimate, where whole groups were drawn,
    kept within the statistic's `bounds` (a correlation spread past 1 would give an interval no
    correlation can reach; clipping at a bound moves no resample across the null)."""
    if scheme != "groups":
        return boot
    center = np.where(np.isfinite(estimate), estimate, np.nanmedian(boot, axis=0))  # a replicate's NaN: the resamples'
    spread = center + few_groups_scale(len(set(np.asarray(groups).tolist())), alpha) * (boot - center)
    return np.clip(spread, *bounds)


def bootstrap_p(boot: np.ndarray, null: float = 0.0) -> float:
    """Two-sided p-value of 'the statistic is `null`': twice the share of replicates on the far
    side of it (at least 1 / B). The inversion of `percentile_interval`: p < alpha exactly when
    that interval excludes `null`."""
    boot = np.asarray(boot, dtype=float)
    boot = boot[~np.isnan(boot)]
    if not boot.size:
        return float("nan")
    tail = min((boot <= null).sum(), (boot >= null).sum())
    return float(min(1.0, max(2 * tail, 1) / boot.size))


def mc_se(p: float, n_resamples: int) -> float:
    """Monte Carlo standard error of a resampling p-value."""
    return float(np.sqrt(max(p * (1 - p), 1 / n_resamples) / n_resamples)) if np.isfinite(p) else float("nan")


def resampling_scheme(groups, min_groups: int = MIN_GROUPS) -> str:
    """How samples are resampled: `samples` when each stands alone; `groups` (whole groups with
    replacement: the cluster bootstrap) when there are at least `min_groups`, so that the interval
    speaks about the population of groups; `within` (each group's samples resampled within it,
    the groups held fixed) when there are fewer: the groups are then these groups, not a sample."""
    if groups is None:
        return "samples"
    labels = np.asarray(groups)
    n_groups = len(set(labels.tolist()))
    if n_groups == len(labels):
        return "samples"
    return "groups" if n_groups >= min_groups else "within"


def group_blocks(groups) -> tuple[np.ndarray, list[int]]:
    """The sample order that puts each group's samples together (groups in order of first
    appearance) and the block sizes: the layout within-group statistics read."""
    labels = np.asarray(groups)
    members = [np.flatnonzero(labels == g) for g in dict.fromkeys(labels.tolist())]
    return np.concatenate(members), [len(m) for m in members]


def resample_indices(groups, n_resamples: int, rng: np.random.Generator, scheme: str):
    """Sample indices of each resample, as an (B, n) array where every resample has n samples,
    else a list of arrays. `groups` is one label per sample (None: each alone); for `within` the
    samples must already be in `group_blocks` order."""
    n = len(groups) if groups is not None else None
    if scheme == "samples":
        return rng.integers(0, n, size=(n_resamples, n))
    labels = np.asarray(groups)
    members = [np.flatnonzero(labels == g) for g in dict.fromkeys(labels.tolist())]
    sizes = np.array([len(m) for m in members])
    if scheme == "within":
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return np.concatenate([start + rng.integers(0, size, size=(n_resamples, size))
                               for start, size in zip(starts, sizes)], axis=1)
    if scheme != "groups":
        raise ValueError(f"unknown resampling scheme {scheme!r}; allowed: samples, groups, within")
    picked = rng.integers(0, len(members), size=(n_resamples, len(members)))
    if (sizes == sizes[0]).all():
        return np.stack(members)[picked].reshape(n_resamples, -1)
    return [np.concatenate([members[g] for g in row]) for row in picked]


def pooled_bootstrap(statistic: Callable, arrays: list[np.ndarray], *, n_resamples: int = 2000, alpha: float = 0.05,
                     seed: int = 0, vectorized: bool = True, groups=None, min_groups: int = MIN_GROUPS,
                     within: bool = False, null: float = 0.0, levels: list[float] | None = None,
                     bounds: tuple[float, float] = UNBOUNDED) -> dict:
    """Pooled estimate of a per-replicate statistic: its mean over replicates, each computed on
    the same samples (the forget set is shared, only the training seed differs).

    `arrays` are (R, n) arrays (replicate x sample, samples aligned; an array of one row is the
    same in every replicate and broadcasts); `statistic(*arrays, axis=-1)` maps (..., n) arrays
    to (...). Replicates and samples are resampled independently, with the
    same sample indices in every drawn replicate (a crossed design: Owen's pigeonhole bootstrap),
    so the interval covers both the variation between training runs and between samples; with
    one replicate it is the ordinary sample bootstrap. Samples are resampled by
    `resampling_scheme(groups, min_groups)`; with `within` the statistic is also given
    `blocks=` (the group sizes, samples in `group_blocks` order) so it can be computed within
    groups. The percentile interval and the p-value of `null` come from the same resamples;
    where the p lies within MC_SE_MARGIN Monte Carlo standard errors of one of `levels` (the
    levels a decision compares it with; default alpha), the bootstrap is redone on 4 times as many
    resamples, up to MAX_RESAMPLE_FACTOR times `n_resamples`. A statistic with several outputs
    (the last axis) is a family that a decision corrects together: one result per output, from
    the same resamples, refined where a Holm-adjusted p lies near alpha. `bounds`: the values the
    statistic can take (`CORRELATION`: -1 to 1), which the few-groups spread keeps to."""
    if not bounds[0] < null < bounds[1]:  # clipped resamples would pile up on the null and raise its p
        raise ValueError(f"the null {null} must lie inside the statistic's bounds {bounds}")
    arrays = [np.atleast_2d(np.asarray(a, dtype=float)) for a in arrays]
    R, n = max(a.shape[0] for a in arrays), arrays[0].shape[1]
    scheme = resampling_scheme(groups, min_groups)
    kwargs = {}
    if scheme == "within":
        order, sizes = group_blocks(groups)
        arrays = [a[:, order] for a in arrays]
        groups = np.asarray(groups)[order]
        if within:
            kwargs["blocks"] = sizes
    per_replicate = _apply(statistic, arrays, vectorized, kwargs)
    if per_replicate.ndim > 1:  # a family of statistics, resampled together and Holm-corrected (one row each)
        return _family(statistic, arrays, groups, scheme, n_resamples, seed, vectorized, kwargs, per_replicate,
                       alpha, null, bounds)
    levels = [alpha] if levels is None else levels
    B = n_resamples
    while True:
        boot = _undefined_as_null(_resample(statistic, arrays, groups, scheme, B, np.random.default_rng(seed),
                                            vectorized, kwargs), null)
        boot = _spread_for_few_groups(boot, np.mean(per_replicate), groups, scheme, alpha, bounds)
        p = bootstrap_p(boot, null)
        se = mc_se(p, B)
        near = any(abs(p - level) < MC_SE_MARGIN * se for level in levels) if np.isfinite(p) else False
        if not near or B >= MAX_RESAMPLE_FACTOR * n_resamples:
            break
        B *= 4
    low, high = percentile_interval(boot, alpha)
    return {"estimate": float(np.mean(per_replicate)), "ci_low": low, "ci_high": high, "p_value": p,
            "p_mc_se": se, "n_resamples": B, "scheme": scheme,
            "between_sd": float(np.std(per_replicate, ddof=1)) if R > 1 else float("nan"),
            "per_replicate": [float(v) for v in per_replicate], "n_replicates": R, "n": n}


def _family(statistic, arrays, groups, scheme, n_resamples, seed, vectorized, kwargs, per_replicate, alpha,
            null, bounds) -> list[dict]:
    """`pooled_bootstrap` of a statistic with k outputs (the last axis): one dict per output, all
    from the same resamples. A family is corrected together (Holm): more resamples for all when a
    Holm-adjusted p lies within MC_SE_MARGIN of its Monte Carlo error (the p's error times its
    Holm multiplier) of alpha, the level its decision is made at."""
    R, n = per_replicate.shape[0], arrays[0].shape[1]
    B = n_resamples
    while True:
        boot = _undefined_as_null(_resample(statistic, arrays, groups, scheme, B, np.random.default_rng(seed),
                                            vectorized, kwargs), null)
        boot = _spread_for_few_groups(boot, per_replicate.mean(axis=0), groups, scheme, alpha, bounds)
        ps = np.array([bootstrap_p(boot[:, j], null) for j in range(boot.shape[1])])
        ses = np.array([mc_se(p, B) for p in ps])
        if not _holm_near(ps, ses, alpha) or B >= MAX_RESAMPLE_FACTOR * n_resamples:
            break
        B *= 4
    out = []
    for j, (p, se) in enumerate(zip(ps, ses)):
        low, high = percentile_interval(boot[:, j], alpha)
        values = per_replicate[:, j]
        out.append({"estimate": float(np.mean(values)), "ci_low": low, "ci_high": high, "p_value": float(p),
                    "p_mc_se": float(se), "n_resamples": B, "scheme": scheme,
                    "between_sd": float(np.std(values, ddof=1)) if R > 1 else float("nan"),
                    "per_replicate": [float(v) for v in values], "n_replicates": R, "n": n})
    return out


def _undefined_as_null(boot: np.ndarray, null: float) -> np.ndarray:
    """A resample in which the statistic is undefined (a score constant in it: a rare binary
    characteristic whose one sample was left out) counts as no effect. Dropping it would leave only
    the resamples that hold the rare sample, all on one side, and a p-value far too small."""
    return np.where(np.isnan(boot), null, boot)


def _holm_near(p: np.ndarray, se: np.ndarray, alpha: float) -> bool:
    """Whether Monte Carlo error could move a Holm decision: some adjusted p within MC_SE_MARGIN
    of its error (its raw error times the Holm multiplier m - rank) of alpha."""
    ok = np.isfinite(p)
    if not ok.any():
        return False
    p, se = p[ok], se[ok]
    order = np.argsort(p)
    multiplier = np.empty(len(p))
    multiplier[order] = len(p) - np.arange(len(p))
    adjusted = holm(p)
    return bool((np.abs(adjusted - alpha) < MC_SE_MARGIN * se * multiplier).any())


def _apply(statistic, arrays, vectorized, kwargs):
    if vectorized:
        return np.atleast_1d(statistic(*arrays, axis=-1, **kwargs))
    R = max(a.shape[0] for a in arrays)
    return np.array([statistic(*[a[r if a.shape[0] > 1 else 0] for a in arrays], **kwargs) for r in range(R)])


def _resample(statistic, arrays, groups, scheme, B, rng, vectorized, kwargs) -> np.ndarray:
    R = max(a.shape[0] for a in arrays)
    reps = rng.integers(0, R, size=(B, R))
    samples = resample_indices(groups if groups is not None else np.arange(arrays[0].shape[1]), B, rng, scheme)
    rows = lambda a, r: r if a.shape[0] > 1 else np.zeros_like(r[..., :1])  # noqa: E731 (shared rows broadcast)
    if isinstance(samples, np.ndarray) and vectorized:
        # chunks of resamples keep the (chunk, R, n) gathers small at large B
        out = []
        for start in range(0, B, 2000):
            s, r = samples[start:start + 2000], reps[start:start + 2000]
            out.append(statistic(*[a[rows(a, r)[:, :, None], s[:, None, :]] for a in arrays], axis=-1,
                                 **kwargs).mean(axis=1))
        return np.concatenate(out)
    return np.array([np.mean([statistic(*[a[r if a.shape[0] > 1 else 0, s] for a in arrays], **kwargs) for r in rr])
                     for rr, s in zip(reps, samples)])


def sample_groups(scores: pd.DataFrame) -> np.ndarray | None:
    """Each sample's group in sample_id order (the columns of a replicate x sample pivot), or
    None where every sample stands alone."""
    if "group" not in scores:
        return None
    groups = scores.drop_duplicates("sample_id").sort_values("sample_id").group.astype(str).to_numpy()
    return groups if len(set(groups)) < len(groups) else None


# --- paired differences: the sign-flip test ------------------------------------------------------

EXACT_SIGN_FLIP_MAX = 16  # up to 2^16 sign patterns are enumerated; beyond, a seeded random sample


def sign_flip_floor(n: int) -> float:
    """The smallest two-sided p-value the exact sign-flip test over n units can give: 2 / 2^n."""
    return 2 / 2 ** n if n > 0 else float("nan")


def _sign_patterns(n: int, seed: int = 0, n_random: int = 20000) -> tuple[np.ndarray, bool]:
    if n <= EXACT_SIGN_FLIP_MAX:
        codes = np.arange(2 ** n)[:, None] >> np.arange(n)[None, :] & 1
        return 1 - 2 * codes.astype(float), True
    signs = 1 - 2 * np.random.default_rng(seed).integers(0, 2, size=(n_random, n)).astype(float)
    return np.vstack([np.ones((1, n)), signs]), False


def sign_flip_p(differences: np.ndarray) -> np.ndarray:
    """The two-sided sign-flip p-value of each row of `differences` (studies x units), at once:
    what simulations of the test need (exact up to 16 units, as `sign_flip_test`)."""
    d = np.atleast_2d(np.asarray(differences, dtype=float))
    signs, _ = _sign_patterns(d.shape[1])
    observed = np.abs(d.mean(axis=1))
    flipped = np.abs(d @ signs.T / d.shape[1])
    scale = np.abs(d).max(axis=1, keepdims=True)
    p = (flipped >= observed[:, None] - 1e-12 * scale).mean(axis=1)
    return np.where(np.isnan(d).any(axis=1), np.nan, p)  # a study with a missing difference: no p


def sign_flip_test(differences, *, alpha: float = 0.05, seed: int = 0) -> dict:
    """Paired differences: the randomization (sign-flip) test of 'no difference' (under it each
    difference is as likely negative as positive), exact over all 2^n sign patterns up to
    n = 16, and its interval by test inversion: every shift delta that the same test does not reject
    at `alpha` (so the interval excludes 0 exactly when p < alpha). `p_floor` is the smallest p the
    design can give (2 / 2^n): with n units a p below alpha is out of reach when it exceeds alpha,
    and the interval is then unbounded. Agrees with scipy.stats.permutation_test (tested)."""
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    n = d.size
    nan = float("nan")
    if n == 0:
        return {"mean": nan, "ci_low": nan, "ci_high": nan, "p_value": nan, "p_floor": nan, "n_units": 0}
    signs, exact = _sign_patterns(n, seed)
    p_floor = sign_flip_floor(n) if exact else 1 / signs.shape[0]
    scale = float(np.abs(d).max()) or 1.0

    def p_at(delta) -> np.ndarray:
        shifted = d[None, :] - np.atleast_1d(delta)[:, None]  # (D, n)
        observed = np.abs(shifted.mean(axis=1))
        flipped = np.abs(shifted @ signs.T / n)  # (D, P)
        return ((flipped >= observed[:, None] - 1e-12 * scale).sum(axis=1)) / signs.shape[0]

    mean = float(d.mean())
    p = float(min(1.0, p_at(0.0)[0]))
    low, high = -np.inf, np.inf
    if p_floor < alpha:
        low, high = _invert(p_at, mean, alpha, scale, -1), _invert(p_at, mean, alpha, scale, +1)
        # differences exactly 0 make p jump at a shift of 0 (their signs stop mattering there): the
        # interval is put in line with the test at 0, so it excludes 0 exactly when p < alpha
        if p >= alpha:
            low, high = min(low, 0.0), max(high, 0.0)
        elif low <= 0.0 <= high:
            low, high = (np.nextafter(0.0, 1.0), high) if mean > 0 else (low, np.nextafter(0.0, -1.0))
    return {"mean": mean, "ci_low": float(low), "ci_high": float(high), "p_value": p, "p_floor": float(p_floor),
            "n_units": int(n), "exact": exact, "n_patterns": int(signs.shape[0]),
            "p_mc_se": 0.0 if exact else mc_se(p, signs.shape[0])}


def _invert(p_at, center: float, alpha: float, scale: float, side: int) -> float:
    """The bound of {delta: p(delta) >= alpha} on one side of the estimate (an interval for the
    mean statistic), by bisection."""
    inside, step = center, scale
    outside = center + side * step
    while p_at(outside)[0] >= alpha:
        step *= 2
        outside = center + side * step
    for _ in range(60):
        middle = (inside + outside) / 2
        if p_at(middle)[0] >= alpha:
            inside = middle
        else:
            outside = middle
        if abs(outside - inside) <= 1e-7 * scale:
            break
    return inside


def paired_differences(frame: pd.DataFrame, value: str) -> np.ndarray:
    """The paired differences `value` (one row per replicate x seed pair), NaNs dropped."""
    return frame[value].astype(float).dropna().to_numpy()


def minimum_detectable_effect(unit_sd: float, n_units: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference that the two-sided sign-flip test on `n_units` paired
    differences (normal, sd `unit_sd`) detects with probability `power` at level `alpha`.
    Decisions under Holm's correction are made at alpha / m for the first of m tests: pass that
    level, not the nominal one. Infinite where the test's floor (2 / 2^n) lies at or above the
    level: no effect is detectable then. Up to 12 units by simulation of the exact test, beyond
    by the one-sample t-test's power (statsmodels), which it approaches."""
    if n_units < 1 or not np.isfinite(unit_sd):
        return float("nan")
    if n_units <= EXACT_SIGN_FLIP_MAX and sign_flip_floor(n_units) >= alpha:
        return float("inf")
    if n_units < 2 or unit_sd == 0:
        return float("nan")  # no spread: the metric sits at a floor or ceiling, nothing to scale
    return _standardized_mde(int(n_units), float(alpha), float(power)) * unit_sd


@functools.lru_cache(maxsize=None)
def _standardized_mde(n_units: int, alpha: float, power: float) -> float:
    if n_units > 12:
        from statsmodels.stats.power import TTestPower

        d = TTestPower().solve_power(effect_size=None, nobs=n_units, alpha=alpha, power=power,
                                     alternative="two-sided")
        return float(np.atleast_1d(d)[0])
    noise = np.random.default_rng(0).normal(size=(4000, n_units))

    def detected(effect: float) -> float:
        return float((sign_flip_p(noise + effect) < alpha).mean())

    low, high = 0.0, 1.0
    while detected(high) < power:
        high *= 2
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (middle, high) if detected(middle) < power else (low, middle)
    return high


def t_test_power(effect_size: float, n_units: int, alpha: float) -> float:
    """Power of the two-sided one-sample t-test on `n_units` units for a mean of `effect_size` SDs:
    the noncentral t (statsmodels' formula). scipy's noncentral t gives NaN for the far tail on the
    other side at small alpha and high power (statsmodels passes the NaN on); that tail is
    negligible there and counts as 0. Only if the near tail itself were NaN, the normal
    approximation."""
    df, nc = n_units - 1, effect_size * math.sqrt(n_units)
    critical = stats.t.isf(alpha / 2, df)
    near, far = stats.nct.sf(critical, df, nc), stats.nct.cdf(-critical, df, nc)
    if not np.isfinite(near):
        near = stats.norm.sf(critical - nc)
    return float(near + (far if np.isfinite(far) else 0.0))


def _clopper_pearson(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds of a rate at `confidence` each (scipy's exact interval)."""
    if trials == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=2 * confidence - 1, method="exact")
    return float(ci.low), float(ci.high)


def binomial_lower(successes: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower bound of a rate: evidence that it exceeds a level."""
    return _clopper_pearson(successes, trials, confidence)[0]


def binomial_upper(successes: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate."""
    return _clopper_pearson(successes, trials, confidence)[1]
