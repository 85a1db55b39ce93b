"""Is each verdict rule trustworthy on this study's design? The same functions the report calls
(`claims`, `validation.rank_association`), run on data simulated in the study's shape: its
groups and their sizes, replicates, seeds, algorithms, samplers and metrics, with the variance
components read from the study's own results. Under no effect, the rate at which each claim is
called `supported` or `contradicted` (a false verdict) with its binomial upper bound, which must
be at most alpha; with an effect of the smallest interesting size planted, the power. A rule is
trusted only with both numbers beside it.

What "no effect" and "the smallest interesting effect" are, per claim:
- C1: the 90th/10th percentile spread of required updates in every replicate is exactly the
  threshold (the boundary of "varies widely"); planted: `calibration.c1_planted_spread`.
- C2: MRD is independent of the ground truth; planted: pooled Spearman rho `smallest_rho`.
- C3: every characteristic is independent of it; planted: one characteristic at `smallest_rho`.
- C4: weighted and uniform runs come from one distribution; planted: every pair improves
  completeness and utility by the smallest effect of interest (the paper's gains)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import claims
from .statistics import (MIN_GROUPS, binomial_lower, binomial_upper, group_blocks, holm, resampling_scheme,
                         sign_flip_floor, sign_flip_p, t_test_power)
from .validation import family_association, rank_association
from .wording import counted

Z90 = 1.2815515655446004  # the 90th percentile of the standard normal


@dataclass
class Design:
    """What a simulated study copies from the real one."""
    groups: np.ndarray                       # one label per forget sample
    replicates: int
    seeds: int = 1
    algorithms: tuple[str, ...] = ()
    weighted: tuple[str, ...] = ()           # the paper family's samplers (C4 reads them)
    completeness: str = "forget_quality"
    n_characteristics: int = 0               # C3's family size
    stability: float = 0.7                   # share of a sample's difficulty that a new training run keeps
    icc: float = 0.3                         # share of difficulty between groups
    median_count: float = 5.0                # typical required updates (C1's p10 is floored at 1)
    pair_sd: dict = field(default_factory=dict)  # SD of a paired difference, per C4 metric (over comparisons)
    comparison_sd: dict = field(default_factory=dict)  # (algorithm, sampler) -> metric -> its own pairs' SD
    sources: dict = field(default_factory=dict)  # where each number came from
    primary: dict = field(default_factory=dict)  # C4's declared primary comparison (`claims.c4_primary`)
    primary_pairs: int = 0                       # its seed pairs, over every fine-tuned model
    primary_sd: dict = field(default_factory=dict)  # SD of one seed pair's difference, per primary metric
    primary_n: dict = field(default_factory=dict)   # pairs each primary metric is tested on (level_*: both reached)

    @property
    def grouped(self) -> bool:
        """Whether samples come in groups (what within-group statistics and crossed attributes need)."""
        return resampling_scheme(self.groups) != "samples"


def _clip(value, low, high, default):
    return float(np.clip(value, low, high)) if np.isfinite(value) else default


def design_from_study(scores: pd.DataFrame, runs: pd.DataFrame, comparison: pd.DataFrame, validation: pd.DataFrame,
                      completeness: str = "forget_quality", primary: dict | None = None) -> Design:
    """The study's design, and its variance components where its results give them. With C4's
    `primary` comparison: its seed pairs and the SD of each primary metric's paired difference
    (the study's own, else one smallest effect)."""
    from .validation import GROUND_TRUTHS

    first = scores[scores.replicate == scores.replicate.min()].sort_values("sample_id")
    groups = first.group.astype(str).to_numpy() if "group" in first else np.arange(len(first)).astype(str)
    truth = next(t for t in GROUND_TRUTHS if t in scores)
    sources = {}
    wide = scores.pivot(index="sample_id", columns="replicate", values=truth)
    stability = float(wide.corr("spearman").to_numpy()[np.triu_indices(wide.shape[1], 1)].mean()) \
        if wide.shape[1] > 1 else float("nan")
    sources["stability"] = f"cross-replicate Spearman rho of {truth}" if np.isfinite(stability) else "default"
    by_group = claims.difficulty_by_group(scores)
    icc = float(by_group[by_group.ground_truth == truth].icc.iloc[0]) if len(by_group) else float("nan")
    sources["icc"] = f"ICC(1) of {truth}" if np.isfinite(icc) else "default"
    c3 = validation[(validation.replicate == "pooled") & (validation.ground_truth == truth)]
    from .difficulty import in_c3
    n_char = int(sum(in_c3(s, k) for s, k in zip(c3.score, c3.kind)))
    paper = comparison[(comparison.get("family", "paper") == "paper") & (comparison.replicate == "pooled")] \
        if len(comparison) else comparison
    pair_sd = {}
    for metric in (completeness, "model_utility"):
        sd = float(np.sqrt(np.nanmean(paper[f"{metric}_sd"].astype(float) ** 2))) \
            if len(paper) and f"{metric}_sd" in paper else float("nan")
        pair_sd[metric] = sd
        sources[f"{metric}_sd"] = "SD of the study's paired differences" if np.isfinite(sd) and sd > 0 else \
            "no spread in the study (a floor): 1 x the smallest effect"
    own = paper[paper.versus == "uniform"] if len(paper) and "versus" in paper else paper.iloc[:0]
    comparison_sd = {(row.algorithm, row.sampler): {m: float(getattr(row, f"{m}_sd")) for m in pair_sd
                                                    if f"{m}_sd" in own}
                     for row in own.itertuples()}
    samplers = [arm for arm, _, fam in claims.comparisons(list(dict.fromkeys(runs.sampler))) if fam == "paper"] \
        if len(runs) else []
    primary_fields = {}
    if primary:  # its own comparison, on its own seeds
        own = claims.compare_samplers(claims.primary_runs(runs, primary), completeness=completeness,
                                      per_replicate=False)
        row = own[(own.algorithm == primary["algorithm"]) & (own.sampler == primary["sampler"])
                  & (own.versus == "uniform")] if len(own) else own
        observed = {m: float(row[f"{m}_sd"].iloc[0]) if len(row) and f"{m}_sd" in row else float("nan")
                    for m in primary["smallest"]}
        pairs = int(row.n_pairs.iloc[0]) if len(row) else 0
        tested = {m: int(row[f"{m}_n"].iloc[0]) for m in primary["smallest"] if len(row) and f"{m}_n" in row}
        primary_fields = dict(primary=primary, primary_pairs=pairs, primary_n=tested,
                              primary_sd=primary_sds(primary, observed, {}, sources))
    # the arms' common seeds (the primary arms may run more)
    seeds = int(runs.groupby(["replicate", "algorithm", "sampler"]).seed.nunique().min()) if len(runs) else 1
    return Design(groups=groups, replicates=int(scores.replicate.nunique()), seeds=seeds, **primary_fields,
                  algorithms=tuple(sorted(runs.algorithm.unique())) if len(runs) else (),
                  weighted=tuple(dict.fromkeys(samplers)), completeness=completeness, n_characteristics=n_char,
                  stability=_clip(stability, 0.1, 1.0, 0.7), icc=_clip(icc, 0.0, 0.8, 0.3),
                  median_count=_clip(float(scores[truth].median()), 1.0, 1e6, 5.0), pair_sd=pair_sd,
                  comparison_sd=comparison_sd, sources=sources)


def primary_sds(primary: dict, observed: dict, planned: dict, sources: dict) -> dict:
    """The SD of one seed pair's difference per primary metric: the study's own where it has one,
    else the planned one (`statistics.c4.planned_sd`), else one smallest effect; `sources` says
    which."""
    out = {}
    for m, smallest in primary["smallest"].items():
        for value, source in ((observed.get(m, np.nan), "the study's seed pairs"),
                              (planned.get(m, np.nan), "statistics.c4.planned_sd"),
                              (smallest, "no SD known: 1 x the smallest effect")):
            if value is not None and np.isfinite(value) and value > 0:
                out[m], sources[f"primary_{m}_sd"] = float(value), source
                break
    return out


# --- simulated studies ---------------------------------------------------------------------------

def _grouped_normal(rng, groups: np.ndarray, icc: float, size: int = 1) -> np.ndarray:
    """(size, n) standard normal draws whose share `icc` of the variance is shared within groups."""
    labels, index = np.unique(groups, return_inverse=True)
    shared = rng.normal(size=(size, len(labels)))[:, index]
    return math.sqrt(icc) * shared + math.sqrt(1 - icc) * rng.normal(size=(size, len(groups)))


def _correlated(rng, base: np.ndarray, groups: np.ndarray, icc: float, r: float) -> np.ndarray:
    """A draw correlated r with `base` (a `_grouped_normal` draw) at the group and the sample level."""
    return r * base + math.sqrt(1 - r ** 2) * _grouped_normal(rng, groups, icc)[0]


def simulate_counts(design: Design, rng, spread: float) -> pd.DataFrame:
    """C1: per replicate, required updates whose 90th/10th percentile ratio is `spread` in the
    population (log-normal), a share `stability` of each sample's log count kept across replicates."""
    sigma = math.log(spread) / (2 * Z90)
    sample = _grouped_normal(rng, design.groups, design.icc)[0]
    rows = []
    for r in range(design.replicates):
        z = math.sqrt(design.stability) * sample + math.sqrt(1 - design.stability) * rng.normal(size=len(sample))
        counts = design.median_count * np.exp(sigma * z)
        rows.append(pd.DataFrame({"replicate": r, "sample_id": np.arange(len(sample)), "group": design.groups,
                                  "update_count_frac": counts, "censored": False}))
    return pd.concat(rows, ignore_index=True)


def expected_spearman(pearson: float, n) -> float:
    """Moran's expectation of Spearman's rho over n bivariate-normal samples of correlation
    `pearson`: below the population's 6/pi arcsin(pearson/2) in small samples, which is what a
    within-group rho over groups of a few samples reads."""
    n = np.asarray(n, float)
    return 6 / (math.pi * (n + 1)) * (math.asin(pearson) + (n - 2) * math.asin(pearson / 2))


def planted_pearson(design: Design, rho: float) -> float:
    """The sample-level correlation of score and ground truth (before the ground truth's replicate
    noise) at which the statistic the verdicts read has expectation `rho`: the within-group
    Spearman rho pooled over groups (weights m(m^2 - 1), a group of m samples' rank variance) where
    samples come in groups, else the Spearman rho over all samples."""
    from scipy.optimize import brentq

    grouped = design.grouped
    sizes = np.asarray(group_blocks(design.groups)[1] if grouped else [len(design.groups)], float)
    weights = sizes * (sizes ** 2 - 1)
    read = lambda p: float((weights * expected_spearman(p, sizes)).sum() / weights.sum())  # noqa: E731
    if rho == 0:
        return 0.0
    p = brentq(lambda p: read(p) - abs(rho), 0.0, 0.999999) * np.sign(rho)
    # from the observed pair's correlation to the ground truth's: the replicate noise (1 - stability) dilutes it,
    # and within groups the truth's noise is not shared by its group, so the within share differs
    s, icc = design.stability, design.icc if grouped else 0.0
    return float(np.clip(p * math.sqrt(1 - s * icc) / math.sqrt(s * (1 - icc)), -0.99, 0.99))


def simulate_scores(design: Design, rng, rho: float, k: int = 1, *, run_sd: float = 0.0,
                    attribute_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """C2 / C3: k per-sample scores (k, n) and the ground truth per replicate (R, n); the first
    score correlates with it so that the statistic the verdict reads (`planted_pearson`) is `rho`
    in expectation. What the verdicts condition on, varied: `run_sd`, an association that differs
    between training runs (each replicate's ground truth gets the first score times a draw of SD
    `run_sd`, mean 0); `attribute_share`, the same attributes crossed in every group (the j-th
    sample of each group shares an attribute effect of that share of the variance, drawn apart
    for the scores and the ground truth: unrelated in the population of attributes)."""
    r = planted_pearson(design, rho)
    x = _grouped_normal(rng, design.groups, design.icc, size=k)
    truth = _correlated(rng, x[0], design.groups, design.icc, r)
    if attribute_share:
        order, sizes = group_blocks(design.groups)
        attribute = np.empty(len(order), int)
        attribute[order] = np.concatenate([np.arange(m) for m in sizes])
        effects = rng.normal(size=(k + 1, attribute.max() + 1))[:, attribute]
        a = math.sqrt(attribute_share)
        x = math.sqrt(1 - attribute_share) * x + a * effects[:k]
        truth = math.sqrt(1 - attribute_share) * truth + a * effects[k]
    s = design.stability
    y = math.sqrt(s) * truth[None] + math.sqrt(1 - s) * rng.normal(size=(design.replicates, len(truth)))
    if run_sd:  # each run's slope, so that the statistic read varies between runs with SD about run_sd
        slope = math.sqrt(s) * planted_pearson(design, run_sd)
        y = y + rng.normal(0, slope, size=(design.replicates, 1)) * x[:1]
    return x, y


def _positive(value, default: float) -> float:
    return float(value) if value is not None and np.isfinite(value) and value > 0 else default


def simulate_runs(design: Design, rng, effect: dict[str, float], smallest: dict[str, float]) -> pd.DataFrame:
    """C4: one row per replicate x algorithm x sampler x seed. A run's outcome is the fine-tuned
    model's level, the seed's (shared by the samplers), and the run's own noise; weighted
    samplers add `effect`. Each comparison's paired difference has its own SD in the study
    (`comparison_sd`, else the SD over comparisons, else one smallest effect): the uniform run's
    own noise is shared by an algorithm's comparisons, each weighted run adds the rest."""
    metrics = (design.completeness, "model_utility")
    pooled = {m: _positive(design.pair_sd.get(m), smallest.get(m, 1.0)) for m in metrics}
    rows = []
    for a in design.algorithms:
        sd = {w: {m: _positive(design.comparison_sd.get((a, w), {}).get(m), pooled[m]) for m in metrics}
              for w in design.weighted}
        uniform = {m: min([pooled[m], *(sd[w][m] for w in design.weighted)]) / math.sqrt(2) for m in metrics}
        own = {"uniform": uniform, **{w: {m: math.sqrt(sd[w][m] ** 2 - uniform[m] ** 2) for m in metrics}
                                      for w in design.weighted}}
        for r in range(design.replicates):
            model = {m: rng.normal(0, pooled[m]) for m in metrics}
            for seed in range(design.seeds):
                shared = {m: rng.normal(0, pooled[m]) for m in metrics}
                for sampler in ("uniform", *design.weighted):
                    row = {"replicate": r, "algorithm": a, "sampler": sampler, "seed": seed, "steps_censored": True}
                    for m in metrics:
                        planted = effect.get(m, 0.0) * claims.COMPARED[m] if sampler != "uniform" else 0.0
                        row[m] = model[m] + shared[m] + rng.normal(0, own[sampler][m]) + planted
                    rows.append(row)
    return pd.DataFrame(rows).sort_values(["replicate", "algorithm", "seed"], kind="stable", ignore_index=True)


# --- the verdicts on simulated studies ------------------------------------------------------------

# Bootstrap resamples per simulated study (at most; the study uses its own, 2000 by default). A p-value
# within 3 Monte Carlo standard errors of a level it is compared with is redrawn on more, as in the study,
# so fewer resamples change decisions only where they are close; the rates measured carry that noise.
SIMULATED_RESAMPLES = 400

# Each returns (verdict, the statistic it read: C1's pooled spread, C2's rho, C3's first characteristic's rho).

def _c1(design, rng, spread, cfg, seed, icc: float | None = None) -> tuple[str, float]:
    design = design if icc is None else replace(design, icc=icc)
    table = claims.c1_spread(simulate_counts(design, rng, spread), threshold=cfg["spread_threshold"],
                             n_resamples=cfg["bootstrap_resamples"], alpha=cfg["alpha"], seed=seed,
                             min_groups=cfg["min_groups"])
    pooled = table[(table.replicate == "pooled") & (table.ground_truth == table.ground_truth.iloc[0])]
    return claims.c1_verdict(table), float(pooled.spread.iloc[0])


def _c2(design, rng, rho, cfg, seed, **scenario) -> tuple[str, float]:
    x, y = simulate_scores(design, rng, rho, **scenario)
    res = rank_association(x[:1], y, seed=seed, n_resamples=cfg["bootstrap_resamples"],
                           alpha=cfg["alpha"], groups=design.groups, min_groups=cfg["min_groups"])
    return claims.c2_verdict(res["ci_low"], res["ci_high"], cfg["smallest_rho"]), res["spearman_rho"]


def _c3(design, rng, rho, cfg, seed, **scenario) -> tuple[str, float]:
    k = max(design.n_characteristics, 1)
    x, y = simulate_scores(design, rng, rho, k, **scenario)
    family = pd.DataFrame(family_association(list(x[:, None, :]), y, seed=seed, n_resamples=cfg["bootstrap_resamples"],
                                             alpha=cfg["alpha"], groups=design.groups, min_groups=cfg["min_groups"]))
    family["p_holm"] = holm(family.p_value)
    return claims.c3_verdict(family, cfg["alpha"], cfg["smallest_rho"]), float(family.spearman_rho.iloc[0])


def _c4(design, rng, planted, cfg, seed) -> tuple[str, float]:
    smallest = smallest_effects(cfg, design.completeness)
    effect = {m: v * planted for m, v in smallest.items()} if planted else {}  # planted: True or a multiple
    runs = simulate_runs(design, rng, effect, smallest)
    table = claims.compare_samplers(runs, alpha=cfg["alpha"], power=cfg["power"], smallest=smallest,
                                    completeness=design.completeness, metrics=(), per_replicate=False)
    paper = table[table.family == "paper"]
    return claims.c4_verdict([claims.pair_verdict(r, cfg["alpha"], design.completeness, smallest)
                              for _, r in paper.iterrows()]), float("nan")


def c4_exact_bound(design: Design, alpha: float) -> float:
    """C4's false-verdict rate under no effect, bounded without simulation: a verdict other than
    'inconclusive' or 'no effect' needs Holm's first rejection, p < alpha / m for one of the m
    tests (2 metrics x pairs), and an exact sign-flip p-value over n pairs is a multiple of 2 / 2^n,
    so the union bound is m times the largest such multiple below alpha / m."""
    m = 2 * len(design.algorithms) * len(design.weighted)
    n = design.replicates * design.seeds
    if m == 0 or n > 16:
        return float("nan")
    step = sign_flip_floor(n)
    k = math.ceil(alpha / m / step) - 1  # the largest multiple strictly below alpha / m
    return float(min(1.0, m * k * step))


def smallest_effects(cfg: dict, completeness: str) -> dict[str, float]:
    """C4's smallest effects of interest: the paper's gains, completeness on its metric's scale."""
    gains = cfg["paper_gains"]
    return {completeness: gains["forget_quality"], "model_utility": gains["model_utility"]}


# What a verdict conditions on, and data that vary it: C1's and C2's and C3's inference holds these
# fine-tuning runs and (with fewer groups than `min_groups`) these groups fixed, and takes each group's
# samples as exchangeable. Beyond that scope, simulated at these sizes:
SCOPE_ICC = 0.5            # C1: groups (authors) that differ, this share of the replicate-averaged counts' variance
SCOPE_RUN_SD = 0.5         # C2, C3: the association's SD between training runs, in smallest_rho (mean 0)
SCOPE_ATTRIBUTE_SHARE = 0.3  # C2, C3: the same attributes in every group, this share of the score's variance
#                              and of the ground truth's stable part
SCOPE_WORDS = {"groups differ": "these {unit}", "association varying by training run": "these {runs} training runs",
               "crossed attributes": "these attributes"}


def beyond_scope(design: Design, cfg: dict) -> list[tuple[str, str, str, dict]]:
    """(claim, condition, effect, scenario) of the calibration rows that simulate data beyond what
    the verdict conditions on, each at no effect in the wider population. A rule that errs there
    above its level is right about these runs, groups or attributes only, and its scope says so
    (`scope_limits`)."""
    threshold, rho = cfg["spread_threshold"], cfg["smallest_rho"]
    run_sd = SCOPE_RUN_SD * rho
    rows = []
    if design.grouped:  # the ICC of the replicate-averaged counts (what the study measures), from the latent one
        target = max(design.icc, SCOPE_ICC)
        s, R = design.stability, design.replicates
        rows.append(("C1", "groups differ", f"spread {threshold:g}, ICC {target:g} between groups",
                     {"icc": min(0.95, target * (s + (1 - s) / R) / s)}))
    if design.replicates > 1:
        rows += [(claim, "association varying by training run",
                  f"rho 0 on average, SD {run_sd:g} between runs", {"run_sd": run_sd}) for claim in ("C2", "C3")]
    if design.grouped:  # the j-th of each group shares an attribute
        rows += [(claim, "crossed attributes",
                  f"rho 0; attributes shared across groups, {SCOPE_ATTRIBUTE_SHARE:g} of the score's variance",
                  {"attribute_share": SCOPE_ATTRIBUTE_SHARE}) for claim in ("C2", "C3")]
    return rows


def scope_limits(table: pd.DataFrame, claim: str, alpha: float, *, unit: str, runs: int) -> list[str]:
    """The words a verdict's scope adds for each beyond-scope condition under which its rule errs
    above its level with evidence (the rate's one-sided 95% Clopper-Pearson lower bound above it,
    so that simulation noise does not move the words): alpha for C2's and C3's two-sided verdicts,
    alpha / 2 for each of C1's one-sided ones (a false 'supported', a false 'no effect')."""
    words = []
    for r in table[(table.claim == claim) & table.condition.isin(list(SCOPE_WORDS))].itertuples():
        n = int(r.simulations)
        level = alpha / 2 if claim == "C1" else alpha
        rates = [r.false_verdict_rate, getattr(r, "false_equivalence_rate", float("nan"))]
        if any(np.isfinite(rate) and binomial_lower(round(rate * n), n) > level for rate in rates):
            words.append(SCOPE_WORDS[r.condition].format(unit=unit, runs=runs))
    return words


def simulation_cfg(cfg: dict) -> dict:
    """The statistics config a simulated study runs under: the study's, at most
    SIMULATED_RESAMPLES bootstrap resamples."""
    return {"min_groups": MIN_GROUPS, **cfg, "bootstrap_resamples": min(cfg["bootstrap_resamples"], SIMULATED_RESAMPLES)}


def design_words(design: Design) -> str:
    """'64 samples in 8 groups, 3 replicates x 3 seeds, 3 algorithms x 2 weighted samplers, 10
    characteristics': the design a calibration or a plan simulates."""
    return (f"{counted(len(design.groups), 'sample')} in {counted(len(set(design.groups.tolist())), 'group')}, "
            f"{counted(design.replicates, 'replicate')} x {counted(design.seeds, 'seed')}, "
            f"{counted(len(design.algorithms), 'algorithm')} x {counted(len(design.weighted), 'weighted sampler')}, "
            f"{counted(design.n_characteristics, 'characteristic')}")


def calibrate(design: Design, cfg: dict, *, simulations: int, power_simulations: int | None = None, seed: int = 0,
              progress: bool = True) -> pd.DataFrame:
    """tables/calibration.csv: per claim and condition (no effect / the smallest interesting
    effect), the share of each verdict over `simulations` simulated studies under no effect and
    `power_simulations` (default: as many) with the effect planted, the false-verdict
    rate under no effect (`supported` or `contradicted`, and C4's `partly supported` and `mixed`)
    with its one-sided 95% Clopper-Pearson upper bound, the power (the share `supported`), and
    the false-equivalence rate: `no effect of interesting size` where an effect of exactly the
    smallest interesting size is there (for C1 at its threshold, the no-effect row), and the mean
    of the statistic each verdict read (`statistic_mean`: a planted effect reads as planted). Then
    the conditions `beyond_scope` simulates, and C4's primary rule (`primary_calibration`)."""
    cfg = simulation_cfg(cfg)
    c1 = cfg.get("calibration", {}).get("c1_planted_spread", 2 * cfg["spread_threshold"])
    threshold, rho = cfg["spread_threshold"], cfg["smallest_rho"]
    beyond = beyond_scope(design, cfg)
    # (claim, condition, effect, rule, value, scenario): a no-effect condition counts false verdicts, a
    # planted one the power; at the smallest interesting effect (C1: at its threshold) false 'no effect'
    plan = [("C1", "no effect", f"spread {threshold:g}", _c1, threshold, {}),
            ("C1", "smallest effect", _c1_effect(c1, threshold), _c1, c1, {}),
            ("C2", "no effect", "rho 0", _c2, 0.0, {}),
            ("C2", "smallest effect", f"rho {rho:g}", _c2, rho, {}),
            ("C3", "no effect", "rho 0", _c3, 0.0, {}),
            ("C3", "smallest effect", f"rho {rho:g} (one characteristic)", _c3, rho, {})]
    plan += [(claim, condition, effect, {"C1": _c1, "C2": _c2, "C3": _c3}[claim],
              threshold if claim == "C1" else 0.0, scenario) for claim, condition, effect, scenario in beyond]
    if design.weighted and design.algorithms:
        gains = smallest_effects(cfg, design.completeness)
        plan += [("C4 secondary", "no effect", "0", _c4, False, {}),
                 ("C4 secondary", "smallest effect", ", ".join(f"{m} +{v:g}" for m, v in gains.items()), _c4, True,
                  {})]
    rows = []
    power_simulations = power_simulations or simulations
    count_of = lambda condition: power_simulations if condition == "smallest effect" else simulations  # noqa: E731
    bar = tqdm(total=sum(count_of(p[1]) for p in plan), desc="calibration", disable=not progress, mininterval=5)
    for i, (claim, condition, effect, run, value, scenario) in enumerate(plan):
        rng = np.random.default_rng([seed, i])
        outcomes = []
        n_sims = count_of(condition)
        for sim in range(n_sims):
            outcomes.append(run(design, rng, value, cfg, sim, **scenario))
            bar.update()
        verdicts = [v for v, _ in outcomes]
        counts = pd.Series(verdicts).value_counts()
        false = int(sum(counts.get(v, 0) for v in claims.POSITIVE))
        supported = int(counts.get(claims.SUPPORTED, 0))
        row = {"claim": claim, "condition": condition, "effect": effect, "simulations": n_sims,
               **{f"share_{v.replace(' ', '_')}": counts.get(v, 0) / n_sims
                  for v in (claims.SUPPORTED, "partly supported", "mixed", claims.CONTRADICTED, claims.NO_EFFECT,
                            claims.INCONCLUSIVE)},
               "statistic_mean": float(np.nanmean([e for _, e in outcomes])) if claim != "C4 secondary"
               else float("nan")}
        if condition == "smallest effect":
            row.update({"power": supported / n_sims, "power_upper95": binomial_upper(supported, n_sims)})
        else:
            row.update({"false_verdict_rate": false / n_sims,
                        "false_verdict_upper95": binomial_upper(false, n_sims)})
            if claim == "C4 secondary":
                row["false_verdict_exact_bound"] = c4_exact_bound(design, cfg["alpha"])
        # 'no effect of interesting size' where an effect of that size is there: C1's null sits at its
        # threshold, the others' planted effect at theirs
        if (claim == "C1") == (condition != "smallest effect"):
            equivalent = int(counts.get(claims.NO_EFFECT, 0))
            row.update({"false_equivalence_rate": equivalent / n_sims,
                        "false_equivalence_upper95": binomial_upper(equivalent, n_sims)})
        rows.append(row)
    bar.close()
    table = pd.DataFrame(rows)
    if design.primary and design.primary_pairs:  # vectorised: PRIMARY_FACTOR times the studies at little cost
        table = pd.concat([table, primary_calibration(design, cfg, simulations=PRIMARY_FACTOR * simulations,
                                                      power_simulations=PRIMARY_FACTOR * power_simulations,
                                                      seed=seed)], ignore_index=True)
    design_note = (f"{design_words(design)}; stability {design.stability:.2f} "
                   f"({design.sources.get('stability', 'default')}), ICC {design.icc:.2f} "
                   f"({design.sources.get('icc', 'default')}); {cfg['bootstrap_resamples']} bootstrap resamples per "
                   f"simulated study")
    table["design"] = design_note
    return table


# --- C4's primary comparisons -----------------------------------------------------------------------

COMPARED_SIGN = {1: "+", -1: "-"}  # the direction a primary metric improves in
PRIMARY_FACTOR = 20  # C4's primary rule is simulated at once, vectorised: this many times `simulations` studies


def _both_parts(result: dict[str, np.ndarray]) -> np.ndarray:
    """C4 as a whole, from `simulate_primary`'s parts: supported where every part is."""
    return np.logical_and.reduce([r[:, 0] for r in result.values()])


def simulate_primary(design: Design, rng, sims: int, alpha: float, planted: dict[str, float],
                     model_sd: float = 0.0, n_pairs: int | None = None) -> dict[str, np.ndarray]:
    """C4a and C4b's rule (`claims.part_verdicts_from_p`) on `sims` studies at once: each primary
    metric's seed-pair differences drawn at its SD (`design.primary_sd`) around `planted` (in
    smallest effects, by metric, in the better direction), the metrics of a part independent (so
    "supported" needs each test to pass on its own: the power is a product, a lower bound where
    the metrics move together; the false-verdict rate holds whatever they do, since every verdict
    needs a Holm rejection), each on its share of the pairs (`primary_n`). `model_sd` (in smallest
    effects): each fine-tuned model's own
    sampler effect, mean 0, shared by its seed pairs. Returns per part (sims, 2) booleans:
    supported, any positive verdict."""
    pairs = n_pairs or design.primary_pairs
    means, ps, direction = {}, {}, {}
    for m, smallest in design.primary["smallest"].items():
        # a metric tested on fewer pairs (level_*: pairs in which both runs reached the level) keeps its share
        share = design.primary_n.get(m, design.primary_pairs) / design.primary_pairs if design.primary_pairs else 1.0
        n = max(1, round(pairs * share))
        models = max(1, min(design.replicates, n))
        model_of = np.arange(n) * models // n
        direction[m] = claims.COMPARED[m]
        d = rng.normal(planted.get(m, 0.0) * smallest * direction[m], design.primary_sd[m], size=(sims, n))
        if model_sd:
            d += rng.normal(0, model_sd * smallest, size=(sims, models))[:, model_of]
        means[m] = d.mean(axis=1)  # p in chunks: studies x 2^n sign patterns would not fit at once
        ps[m] = np.concatenate([sign_flip_p(d[i:i + 250]) for i in range(0, sims, 250)])
    return claims.part_verdicts_from_p(design.primary["parts"], means, ps, direction, alpha)


def primary_calibration(design: Design, cfg: dict, *, simulations: int, power_simulations: int,
                        seed: int = 0) -> pd.DataFrame:
    """Calibration rows of C4a, C4b and C4 (both parts): under no effect (any positive verdict
    is false), with one metric of a part at no effect and the others at their smallest effect (a
    'supported' there is false: the intersection-union test holds it at alpha), with a sampler
    effect that differs between the fine-tuned models but averages 0 (SD one smallest effect: a
    verdict there is right about these models, not about models in general), and with every
    smallest effect planted (the power)."""
    alpha = cfg["alpha"]
    rng = np.random.default_rng([seed, 900])
    everything = {m: 1.0 for m in design.primary["smallest"]}
    metrics = {**design.primary["parts"], "C4": list(design.primary["smallest"])}
    conditions = [("no effect", simulate_primary(design, rng, simulations, alpha, {}), simulations),
                  ("effect varying by model", simulate_primary(design, rng, simulations, alpha, {}, model_sd=1.0),
                   simulations),
                  ("smallest effect", simulate_primary(design, rng, power_simulations, alpha, everything),
                   power_simulations)]
    rows = []
    for condition, result, n in conditions:
        parts = {**result, "C4": np.column_stack([_both_parts(result),
                                                   np.logical_or.reduce([r[:, 1] for r in result.values()])])}
        for claim, r in parts.items():
            text = {"no effect": "0", "effect varying by model": "mean 0, SD 1 x the smallest effect between models",
                    "smallest effect": ", ".join(f"{m} {COMPARED_SIGN[claims.COMPARED[m]]}"
                                                 f"{design.primary['smallest'][m]:.3g}" for m in metrics[claim])}
            row = {"claim": claim, "condition": condition, "effect": text[condition], "simulations": n,
                   "share_supported": float(r[:, 0].mean())}
            if condition == "smallest effect":
                row.update({"power": float(r[:, 0].mean()), "power_upper95": binomial_upper(int(r[:, 0].sum()), n)})
            else:
                false = int(r[:, 1].sum())
                row.update({"false_verdict_rate": false / n, "false_verdict_upper95": binomial_upper(false, n)})
            rows.append(row)
    for part, metrics in design.primary["parts"].items():  # the intersection-union test's worst partial null
        worst = 0.0
        for absent in metrics:
            planted = {m: (0.0 if m == absent else 1.0) for m in metrics}
            worst = max(worst, float(simulate_primary(design, rng, simulations, alpha, planted)[part][:, 0].mean()))
        rows.append({"claim": part, "condition": "one effect absent", "effect": "the others at their smallest effect",
                     "simulations": simulations, "share_supported": worst, "false_verdict_rate": worst,
                     "false_verdict_upper95": binomial_upper(round(worst * simulations), simulations)})
    return pd.DataFrame(rows)


def seeds_needed(design: Design, alpha: float, power: float, *, simulations: int = 200, seed: int = 0,
                 most: int = 40) -> dict[str, int | None]:
    """Per part and for C4 (both parts), the fewest seeds per fine-tuned model whose seed pairs
    give `power` at the smallest effects (None: not within `most`)."""
    rng = np.random.default_rng([seed, 901])
    everything = {m: 1.0 for m in design.primary["smallest"]}
    needed: dict[str, int | None] = {part: None for part in [*design.primary["parts"], "C4"]}
    for seeds in range(2, most + 1):
        result = simulate_primary(design, rng, simulations, alpha, everything, n_pairs=seeds * design.replicates)
        for part, hit in [*((p, r[:, 0]) for p, r in result.items()), ("C4", _both_parts(result))]:
            if needed[part] is None and hit.mean() >= power:
                needed[part] = seeds
        if all(v is not None for v in needed.values()):
            break
    return needed


# Multiples of C4's smallest effects, each planted on every metric at once: which of them the configured
# pairs detect (0: no effect, where the rule's power is its false-verdict rate); beyond the last,
# one far larger tells "beyond the grid" from "no effect of any size" (the exact tests' floor)
PRIMARY_MULTIPLES = (0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20)
FAR_MULTIPLE = 1000


def detectable_multiples(design: Design, alpha: float, power: float, *, simulations: int = 200,
                         seed: int = 0) -> dict[str, float]:
    """Per part and for C4 (both parts), the multiple of the smallest effects (planted on each of
    its metrics at once) that the configured seed pairs detect with `power`: where more seeds are
    out of reach, the effect the design can speak about. Interpolated on `PRIMARY_MULTIPLES`, every
    multiple on the same draws (common random numbers: a smooth power curve); inf beyond them,
    NaN where no effect of any size can be detected (the pairs' exact tests cannot reach the
    rule's levels)."""
    def powers_at(k: float) -> dict[str, float]:
        result = simulate_primary(design, np.random.default_rng([seed, 902]), simulations, alpha,
                                  {m: k for m in design.primary["smallest"]})
        return {**{part: float(r[:, 0].mean()) for part, r in result.items()}, "C4": float(_both_parts(result).mean())}

    curve: dict[str, list[float]] = {}
    for k in PRIMARY_MULTIPLES:
        for part, value in powers_at(k).items():
            curve.setdefault(part, []).append(value)
        if min(p[-1] for p in curve.values()) >= power:
            break
    found = {part: _interpolated_mde(PRIMARY_MULTIPLES[:len(p)], p, power) for part, p in curve.items()}
    if any(not np.isfinite(v) for v in found.values()):
        far = powers_at(FAR_MULTIPLE)
        found = {part: v if np.isfinite(v) or far[part] >= power else float("nan") for part, v in found.items()}
    return found


# --- C4's unit: replicate x seed pairs, or groups (authors)? --------------------------------------

UNIT_PLANTED_SD = 0.5   # the planted effect of the unit comparison, in SDs of one group's paired difference
DEFAULT_RUN_SHARE = 0.3  # the run pair's share of a group's paired difference, before a study has measured it
UNIT_SIMULATIONS = 2000


def group_differences(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per weighted sampler (paper family) x algorithm x replicate x seed x group: weighted -
    uniform of `tables/author_outcomes.csv`'s outcome."""
    pairs = [(arm, versus) for arm, versus, fam in claims.comparisons(list(dict.fromkeys(outcomes.sampler)))
             if fam == "paper"] if len(outcomes) else []
    keys = ["algorithm", "replicate", "seed", "group"]
    parts = []
    for arm, versus in pairs:
        merged = outcomes[outcomes.sampler == arm].merge(outcomes[outcomes.sampler == versus], on=keys,
                                                         suffixes=("", "_versus"))
        merged["difference"] = merged.outcome - merged.outcome_versus
        merged["comparison"] = arm + "/" + merged.algorithm
        parts.append(merged[["comparison", *keys, "difference"]])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["comparison", *keys, "difference"])


def run_share(differences: pd.DataFrame, alpha: float = 0.05) -> dict:
    """The share of a group's paired difference that every group of the same run pair shares
    (one run forgetting more overall moves them all): ICC(1) of the differences by run pair,
    nested in the comparisons (each comparison's own mean is its effect, not shared noise, so
    the between-pair mean square has sum(pairs - 1) degrees of freedom), with its F interval.
    0: groups are independent units; above 0 their signs move together."""
    keys = ("run_share", "run_share_ci_low", "run_share_ci_high")
    if differences.empty or differences.group.nunique() < 2:
        return dict.fromkeys(keys, float("nan"))
    d = differences.assign(pair=differences.replicate.astype(str) + "|" + differences.seed.astype(str))
    cells = d.groupby(["comparison", "pair"]).difference
    pair_mean, size = cells.transform("mean"), cells.transform("size")
    comparison_mean = d.groupby("comparison").difference.transform("mean")
    n_pairs, n = cells.ngroups, len(d)
    df_between, df_within = n_pairs - d.comparison.nunique(), n - n_pairs
    within = float(((d.difference - pair_mean) ** 2).sum())
    if df_between < 1 or df_within < 1 or within == 0:
        return dict.fromkeys(keys, float("nan"))
    # each observation carries its cell's deviation once: the cell's size times its squared deviation in all
    between = float(((pair_mean - comparison_mean) ** 2).sum())
    F = (between / df_between) / (within / df_within)
    # groups per run pair (equal when every run has every group)
    return dict(zip(keys, claims.icc_from_f(F, df_between, df_within, float(size.mean()), alpha)))


def unit_rejections(n_pairs: int, n_groups: int, share: float, effect: float, level: float, rng,
                    simulations: int = UNIT_SIMULATIONS) -> dict[str, float]:
    """Simulated paired differences, one per (run pair, group), SD 1, a share `share` of their
    variance common to the run pair, mean `effect`; the sign-flip test's rejection rate at
    `level` with the run pair as the unit (its groups averaged) and with the group as the unit
    (its run pairs averaged)."""
    share = float(np.clip(share, 0.0, 1.0))
    run = rng.normal(size=(simulations, n_pairs, 1))
    own = rng.normal(size=(simulations, n_pairs, n_groups))
    d = effect + math.sqrt(share) * run + math.sqrt(1 - share) * own
    return {"pair": float((sign_flip_p(d.mean(axis=2)) < level).mean()),
            "group": float((sign_flip_p(d.mean(axis=1)) < level).mean())}


def c4_unit(design: Design, cfg: dict, share: dict | None = None, *, simulations: int = UNIT_SIMULATIONS,
            seed: int = 0) -> pd.DataFrame:
    """Which unit gives C4 the most power at a correct error rate? Both analyses simulated on this
    design at Holm's first level (alpha over C4's tests): under no effect at the run share's upper
    bound (`run_share`, or DEFAULT_RUN_SHARE before a study measured it), and with an effect of
    UNIT_PLANTED_SD planted (exchangeable normal differences). The group qualifies only where its
    false rejections are not detectably above the level (one-sided binomial test at alpha over
    the simulated studies) and it has more power; otherwise the run pair, whose runs are
    independent whatever the groups share. C4's verdicts pair runs; where the group qualifies,
    the report says so."""
    from scipy.stats import binomtest

    n_pairs, n_groups = design.replicates * design.seeds, len(set(design.groups.tolist()))
    tests = max(2 * len(design.algorithms) * len(design.weighted), 1)
    level = cfg["alpha"] / tests
    share = share or {}
    measured = np.isfinite(share.get("run_share_ci_high", np.nan))
    assumed = float(np.clip(share["run_share_ci_high"], 0.0, 1.0)) if measured else DEFAULT_RUN_SHARE
    rng = np.random.default_rng(seed)
    null = unit_rejections(n_pairs, n_groups, assumed, 0.0, level, rng, simulations)
    planted = unit_rejections(n_pairs, n_groups, assumed, UNIT_PLANTED_SD, level, rng, simulations)
    rows = []
    for unit, n_units in (("pair", n_pairs), ("group", n_groups)):
        false = round(null[unit] * simulations)
        above = binomtest(false, simulations, level, alternative="greater").pvalue
        rows.append({"above_level_p": float(above), "unit": unit, "n_units": n_units, "level": level, "simulations": simulations,
                     "run_share": share.get("run_share", np.nan), "run_share_ci_low": share.get("run_share_ci_low", np.nan),
                     "run_share_ci_high": share.get("run_share_ci_high", np.nan), "run_share_assumed": assumed,
                     "run_share_source": "the upper bound of its interval on the study's groups" if measured
                     else f"default {DEFAULT_RUN_SHARE:g} (no measurement yet)",
                     "false_rejection_rate": null[unit], "false_rejection_upper95": binomial_upper(false, simulations),
                     "power": planted[unit], "planted_sd": UNIT_PLANTED_SD})
    table = pd.DataFrame(rows)
    table["within_level"] = table.above_level_p >= cfg["alpha"]  # 2000 studies: 1.5 x the level passes 26% of the time
    group = table.iloc[1]
    chosen = "group" if group.within_level and group.power > table.power.iloc[0] else "pair"
    table["chosen"] = table.unit == chosen
    return table


# --- power before compute (`make plan`) -----------------------------------------------------------

SD_RATIOS = (1, 3, 10)  # a paired difference's SD over the paper's gain: C4's pairs needed at each, in the plan
SYNTHETIC_KNOWN_FACTORS = 4  # the synthetic generator's numeric factors in factors.csv (tested)


def planned_groups(data_cfg: dict) -> np.ndarray | None:
    """One group label per forget sample, from the configuration alone (None: a local folder,
    whose groups are in its files; a benchmark's cut is made here as the data stage makes it)."""
    from .data import tofu

    if data_cfg["source"] == "synthetic":
        syn = data_cfg["synthetic"]
        people = max(1, round(syn["n_people"] * data_cfg["forget_percent"] / 100))
        return np.repeat(np.arange(people), syn["attributes_per_person"]).astype(str)
    if data_cfg["source"] == "tofu":
        split = data_cfg["tofu"]["forget_split"]
        k = data_cfg["tofu"].get("per_author") or tofu.AUTHOR_QA
        return np.repeat(np.arange(tofu.n_authors(split)), k).astype(str)
    if data_cfg["source"] == "benchmark":  # the cut the data stage will make (cheap: no model)
        from .data.benchmarks import benchmark_study

        return np.array([r["group"] for r in benchmark_study(data_cfg["benchmark"])[0]["forget"]])
    return None


def _planned_kind(data_cfg: dict) -> str:
    """'text' or 'qa': the rows the configuration's data will be."""
    if data_cfg["source"] == "benchmark":
        from .data.benchmarks import benchmark_study

        return "qa" if "question" in benchmark_study(data_cfg["benchmark"])[0]["forget"][0] else "text"
    return "text" if data_cfg["synthetic"].get("form") == "text" else "qa"


def design_from_config(cfg: dict, data_cfg: dict, previous: Design | None = None) -> Design | None:
    """The design a configuration will run: its groups, replicates, seeds, algorithms and
    samplers; variance components from a previous run of the same study (`previous`,
    `design_from_study`) or the stated defaults."""
    from .difficulty import CHARACTERISTICS
    from .validation import NOT_IN_C3

    groups = planned_groups(data_cfg)
    if groups is None:
        return None
    ul = cfg["unlearning"]
    weighted = tuple(dict.fromkeys(arm for arm, _, fam in claims.comparisons(list(ul["samplers"])) if fam == "paper"))
    shape = dict(groups=groups, replicates=len(cfg["replicates"]), seeds=len(ul["seeds"]),
                 algorithms=tuple(sorted(ul["algorithms"])), weighted=weighted,
                 completeness=claims.COMPLETENESS[_planned_kind(data_cfg)])
    from .stages import unlearning_steps

    budgets = {a: unlearning_steps(ul, a, len(groups)) for a in ul["algorithms"]}
    primary = claims.c4_primary(cfg["statistics"], list(ul["algorithms"]), list(ul["samplers"]), budgets,
                                shape["completeness"])
    if primary:  # its seed pairs as configured; SDs from the previous run, else the planned ones
        sources = {}
        known = previous is not None and previous.primary and previous.primary_pairs
        observed = {m: sd for m, sd in previous.primary_sd.items()
                    if "study's" in previous.sources.get(f"primary_{m}_sd", "")} if known else {}
        seeds = primary["seeds"] or ul["seeds"]
        shape.update(primary=primary, primary_pairs=len(cfg["replicates"]) * len(seeds),
                     primary_sd=primary_sds(primary, observed, cfg["statistics"]["c4"]["planned_sd"].get(cfg["name"], {}),
                                            sources))
    if previous is not None:
        return Design(**shape, n_characteristics=previous.n_characteristics, stability=previous.stability,
                      icc=previous.icc, median_count=previous.median_count, pair_sd=previous.pair_sd,
                      comparison_sd=previous.comparison_sd,
                      sources={**{k: f"{v}, from the previous run" for k, v in previous.sources.items()},
                               **(sources if primary else {})})
    n_char = len(set(CHARACTERISTICS) - set(NOT_IN_C3)) + (SYNTHETIC_KNOWN_FACTORS if data_cfg["source"] == "synthetic"
                                                             else 0)
    return Design(**shape, n_characteristics=n_char,
                  sources={"stability": "default", "icc": "default", **(sources if primary else {})})



def _interpolated_mde(grid, powers, target: float) -> float:
    """The smallest effect on `grid` whose simulated power reaches `target`, interpolated linearly
    between grid points (inf: not within the grid)."""
    for i, (effect, power) in enumerate(zip(grid, powers)):
        if power >= target:
            if i == 0:
                return float(effect)
            e0, p0 = grid[i - 1], powers[i - 1]
            return float(e0 + (target - p0) / (power - p0) * (effect - e0))
    return float("inf")


def _units_needed(effect_size: float, alpha: float, power: float) -> int:
    """The fewest paired units whose one-sample t-test at `alpha` reaches `power` for a mean
    difference of `effect_size` SDs (`statistics.t_test_power`, searched over whole units), and no
    fewer than the sign-flip test needs to reach `alpha` at all."""
    reaches = lambda n: t_test_power(effect_size, n, alpha) >= power  # noqa: E731
    fewest = 2  # and enough for the sign-flip test's floor (2 / 2^n) to lie below alpha
    while sign_flip_floor(fewest) >= alpha:
        fewest += 1
    if reaches(fewest):
        return fewest
    low, high = fewest, 2 * fewest
    while not reaches(high):
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return high


def _c1_effect(planted: float, threshold: float) -> str:
    """C1's planted effect in words: power is stated above the threshold, which is the null's edge."""
    return f"spread {planted:g} (planted; the threshold is {threshold:g})"


def power_plan(design: Design, cfg: dict, *, simulations: int = 40, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Per claim, before any compute: the false-verdict rate under no effect and the power over a
    grid of effects, on `simulations` studies simulated in the design each (the verdict functions
    the report calls, at Holm's alpha where the claim is a family), and the smallest effect
    detected with `statistics.power` (interpolated on the grid; inf: not within it). C4's grid is
    in multiples of the paper's gains; `units_needed` is how many replicate x seed pairs a gain of
    the paper's size would need (the paired t-test's power at Holm's first level, which the
    sign-flip test approaches)."""
    cfg = simulation_cfg(cfg)
    threshold, rho = cfg["spread_threshold"], cfg["smallest_rho"]
    rho_grid = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
    planted = cfg["calibration"]["c1_planted_spread"]
    plan = [("C1", _c1_effect(planted, threshold), _c1, threshold, [threshold * f for f in (1.25, 1.5, 2, 3, 5)], "spread"),
            ("C2", f"rho {rho:g}", _c2, 0.0, rho_grid, "rho"),
            ("C3", f"rho {rho:g} (one characteristic)", _c3, 0.0, rho_grid, "rho")]
    if design.weighted and design.algorithms:
        plan.append(("C4", "the paper's gains", _c4, False, (1, 3, 10, 30, 100), "x the paper's gains"))
    bar = tqdm(total=simulations * sum(1 + len(p[4]) for p in plan), desc="power plan", disable=not progress,
               mininterval=5)
    rows = []
    for i, (claim, smallest, run, null, grid, unit) in enumerate(plan):
        rng = np.random.default_rng([seed, 100 + i])

        def share(value, words):
            verdicts = []
            for sim in range(simulations):
                verdicts.append(run(design, rng, value, cfg, sim)[0])
                bar.update()
            return float(np.mean([v in words for v in verdicts]))

        false = share(null, claims.POSITIVE)
        powers = [share(value, (claims.SUPPORTED,)) for value in grid]
        row = {"claim": claim, "smallest_effect": smallest, "simulations": simulations, "false_verdict_rate": false,
               "false_verdict_upper95": binomial_upper(round(false * simulations), simulations),
               "power_grid": ", ".join(f"{g:g}x the paper's gains: {p:.0%}" if claim == "C4" else f"{unit} {g:g}: {p:.0%}"
                                       for g, p in zip(grid, powers)), "unit": unit,
               "mde": _interpolated_mde(grid, powers, cfg["power"])}
        if claim == "C4":
            m = 2 * len(design.algorithms) * len(design.weighted)
            gains = smallest_effects(cfg, design.completeness)
            needed = {}
            for metric, gain in gains.items():
                sd = design.pair_sd.get(metric, float("nan"))
                sd = sd if np.isfinite(sd) and sd > 0 else gain
                needed[metric] = _units_needed(gain / sd, cfg["alpha"] / m, cfg["power"])
            row["units"], row["comparisons"] = design.replicates * design.seeds, m
            row["units_needed"] = ", ".join(f"{k}: {v}" for k, v in needed.items())
            row["units_needed_by_sd"] = ", ".join(f"{ratio:g}x: {_units_needed(1 / ratio, cfg['alpha'] / m, cfg['power'])}"
                                                  for ratio in SD_RATIOS)
        rows.append(row)
    bar.close()
    return pd.DataFrame(rows)


def primary_plan(design: Design, cfg: dict, *, simulations: int = 200, seed: int = 0) -> pd.DataFrame:
    """C4's primary comparison before the run: per part and for C4 as a whole, its seed pairs, its
    false-verdict rate under no effect, its power at the smallest effects, the seeds per
    fine-tuned model that give `statistics.power` (None: more than 40), and the multiple of the
    smallest effects these pairs detect with that power (`detectable_multiples`; inf: beyond the
    grid, NaN: no effect of any size)."""
    table = primary_calibration(design, cfg, simulations=simulations, power_simulations=simulations, seed=seed)
    needed = seeds_needed(design, cfg["alpha"], cfg["power"], simulations=simulations, seed=seed)
    multiple = detectable_multiples(design, cfg["alpha"], cfg["power"], simulations=simulations, seed=seed)
    rows = []
    for claim in (*design.primary["parts"], "C4"):
        part = table[table.claim == claim].set_index("condition")
        rows.append({"claim": claim, "pairs": design.primary_pairs,
                     "false_verdict_rate": part.loc["no effect", "false_verdict_rate"],
                     "power": part.loc["smallest effect", "power"], "seeds_needed": needed[claim],
                     "detectable_multiple": multiple[claim],
                     "metrics": ", ".join(design.primary["parts"].get(claim, [m for ms in design.primary["parts"].values()
                                                                               for m in ms]))})
    return pd.DataFrame(rows)


def render_primary_plan(design: Design, plan: pd.DataFrame, cfg: dict) -> str:
    """The primary comparison's paragraph and table in the plan (markdown)."""
    p = design.primary
    sds = ", ".join(f"{m} {design.primary_sd[m]:.3g} ({design.sources.get(f'primary_{m}_sd', 'given')}; smallest "
                    f"effect {p['smallest'][m]:.3g})" for m in p["smallest"])
    lines = ["", f"C4's primary comparison (`statistics.c4`): {p['algorithm']} `{p['sampler']}` against uniform over "
             f"{design.primary_pairs} seed pairs ({design.replicates} fine-tuned models). SD of one pair's difference: "
             f"{sds}.", "",
             f"| part | metrics | seed pairs | power at the smallest effects | false verdicts under no effect | "
             f"seeds per model for {cfg['power']:.0%} power | detectable with these pairs ({cfg['power']:.0%} power) |",
             "|---|---|---|---|---|---|---|"]
    for r in plan.itertuples():
        needed = "more than 40" if pd.isna(r.seeds_needed) else f"{int(r.seeds_needed)}"
        multiple = (f"{r.detectable_multiple:.2g} x the smallest effects" if np.isfinite(r.detectable_multiple) else
                    "none of any size: the pairs' exact tests cannot reach the rule's levels"
                    if np.isnan(r.detectable_multiple) else f"more than {PRIMARY_MULTIPLES[-1]} x the smallest effects")
        lines.append(f"| {r.claim} | {r.metrics} | {r.pairs} | {r.power:.0%} | {r.false_verdict_rate:.1%} | {needed} "
                     f"| {multiple} |")
    return "\n".join(lines)


def render_power_plan(study: str, design: Design, table: pd.DataFrame, cfg: dict,
                      unit: pd.DataFrame | None = None) -> str:
    """The plan's power section (markdown)."""
    n_groups = len(set(design.groups.tolist()))
    inference = ("over groups (the sign-flip test over groups; other intervals resample whole groups)"
                 if n_groups >= cfg.get("min_groups", MIN_GROUPS) else
                 f"within these {n_groups} groups (fewer than statistics.min_groups: verdicts name them)")
    lines = ["", f"## Power of {study}", "",
             f"{design_words(design)} in C3; inference {inference}. Stability {design.stability:.2f} "
             f"({design.sources.get('stability')}), ICC {design.icc:.2f} ({design.sources.get('icc')}). "
             f"{int(table.simulations.iloc[0])} simulated studies per point, {simulation_cfg(cfg)['bootstrap_resamples']} "
             "bootstrap resamples each: a coarse plan; `make calibration` measures the finished study's rules.", "",
             f"| claim | smallest interesting effect | detectable with {cfg['power']:.0%} power | false verdicts under "
             "no effect (95% upper) | power over the grid | verdict |",
             "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        mde = "not within the grid" if not np.isfinite(r.mde) else f"{r.mde:.2g} ({r.unit})"
        smallest = {"C1": cfg["calibration"]["c1_planted_spread"], "C4": 1.0}.get(r.claim, cfg["smallest_rho"])
        ok = np.isfinite(r.mde) and r.mde <= smallest
        lines.append(f"| {r.claim} | {r.smallest_effect} | {mde} | {r.false_verdict_rate:.0%} "
                     f"({r.false_verdict_upper95:.0%}) | {r.power_grid} | "
                     f"{'can detect it' if ok else 'cannot detect the smallest interesting effect'} |")
    c4 = table[table.claim == "C4"]
    if len(c4):
        r = c4.iloc[0]
        comparisons = int(r.comparisons)
        smallest_p, first = 2 / 2 ** int(r.units), cfg["alpha"] / comparisons
        floor = (f"With {int(r.units)} pairs the exact sign-flip test's smallest two-sided p is 2/2^{int(r.units)} = "
                 f"{smallest_p:.3g}, " + (f"above Holm's first level {first:.3g} (alpha / {comparisons} comparisons): no gain of "
                                          "any size can be declared, so the power is 0 over the whole grid. "
                                          if smallest_p > first else f"below Holm's first level {first:.3g}. "))
        lines += ["", floor + f"C4 pairs {int(r.units)} replicate x seed units per comparison; a gain of the paper's size "
                  f"would need about {r.units_needed} units at 80% power (SD of a paired difference: "
                  + ", ".join(f"{m}: {design.sources.get(f'{m}_sd', 'default, 1 x the gain')}"
                              for m in smallest_effects(cfg, design.completeness)) + "). Where that SD is 1x, 3x or 10x "
                  f"the gain, it needs {r.units_needed_by_sd} pairs: the pairs a budget buys decide C4 only if the "
                  "runs vary little against the gain."]
    if unit is not None and len(unit):
        pair, group = (unit[unit.unit == u].iloc[0] for u in ("pair", "group"))
        chosen = "run pairs" if bool(pair.chosen) else "run pairs (groups would qualify; the verdicts pair runs)"
        lines += ["", f"C4's unit: {chosen}. With the group as the unit (n = {group.n_units:.0f}) the sign-flip test "
                  f"rejects {group.false_rejection_rate:.1%} of no-effect studies at Holm's first level "
                  f"{group.level:.3g} and has {group.power:.0%} power at {group.planted_sd:g} SD; with the run pair "
                  f"(n = {pair.n_units:.0f}), {pair.false_rejection_rate:.1%} and {pair.power:.0%} (run share "
                  f"{group.run_share_assumed:.2f}: {group.run_share_source}). Groups are independent units only "
                  "when a run's overall forgetting does not move them together."]
    return "\n".join(lines)
