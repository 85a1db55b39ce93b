"""How much of what unlearning removed an attack brings back, per sample, per run and by
difficulty tier; and whether harder samples recover more. Tables only: the attacks themselves are
in `robustness`."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .claims import CONTRADICTED, INCONCLUSIVE, NO_EFFECT, SUPPORTED, comparisons, effect_verdict
from .claims import _pair_metric as pair_metric
from .statistics import holm, mean_ci, minimum_detectable_effect, sign_flip_test

TIER_NAMES = ("easy", "medium", "hard")


def recovery(before, unlearned, attacked, *, min_drop: float) -> np.ndarray:
    """Per sample: (attacked - unlearned) / (before - unlearned), the share of unlearning's change
    that the attack undoes: 0 where the attack leaves the sample as unlearning left it, 1 where it
    restores the value before unlearning, above 1 past it, below 0 where the attack pushes
    forgetting further. Undefined (NaN) where unlearning changed the sample by less than
    `min_drop`: there is nothing to recover, and the ratio would only amplify noise."""
    before, unlearned, attacked = (np.asarray(x, dtype=float) for x in (before, unlearned, attacked))
    drop = before - unlearned
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(drop) >= min_drop, (attacked - unlearned) / drop, np.nan)


def pooled_recovery(before, unlearned, attacked, *, min_drop: float) -> float:
    """One run's recovery: what came back, summed over samples, over what unlearning removed,
    summed (a ratio of sums, so samples that barely moved weigh little instead of being dropped).
    NaN where the summed change is below n x `min_drop` (changes that cancel out)."""
    before, unlearned, attacked = (np.asarray(x, dtype=float) for x in (before, unlearned, attacked))
    ok = ~(np.isnan(before) | np.isnan(unlearned) | np.isnan(attacked))
    drop = float((before - unlearned)[ok].sum())
    if ok.sum() == 0 or abs(drop) < ok.sum() * min_drop:
        return float("nan")
    return float((attacked - unlearned)[ok].sum()) / drop


def difficulty_tiers(scores, *, n_tiers: int = 3, seed: int = 0) -> np.ndarray:
    """Each sample's tier, 0 (easiest) to n_tiers - 1 (hardest), by rank of `scores` (higher =
    harder) in near-equal parts; ties are broken at random with `seed`, not by row order (which
    would put one author's tied samples in one tier). Samples without a score get -1."""
    scores = np.asarray(scores, dtype=float)
    tiers = np.full(len(scores), -1)
    ok = np.flatnonzero(~np.isnan(scores))
    if ok.size == 0:
        return tiers
    jitter = np.random.default_rng(seed).random(ok.size)
    order = np.lexsort((jitter, scores[ok]))  # by score, ties in random order
    tiers[ok[order]] = np.arange(ok.size) * n_tiers // ok.size
    return tiers


def tier_table(samples: pd.DataFrame, scores: list[str], *, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Recovery by difficulty tier. `samples` has one row per (run, sample): `run` (the unlearned
    model), `arm` ("algorithm/sampler"), `attack`, `recovery` and a column per difficulty score in
    `scores`. Tiers are formed per run (its own replicate's scores); each run's mean recovery per
    tier is one value,
    and the interval is a t-interval over runs (samples of one run share its model). `n_samples`
    counts every sample with a score, recovery defined or not, so the tiers add up to the forget
    set. With `replicate` and `seed` columns, rows with arm "all" come first: every arm's runs,
    averaged within each (replicate, seed) unit, the interval over units (as C4 pairs them)."""
    rows = []
    for score in scores:
        for (arm, attack), part in samples.groupby(["arm", "attack"], sort=False):
            per_run = []
            for run, one in part.groupby("run", sort=False):
                tiers = difficulty_tiers(one[score].to_numpy(), n_tiers=len(TIER_NAMES), seed=seed)
                per_run.append(pd.DataFrame({"run": run, "tier": tiers, "recovery": one["recovery"].to_numpy()}))
            ranked = pd.concat(per_run)
            for t, name in enumerate(TIER_NAMES):
                in_tier = ranked[ranked.tier == t]
                means = in_tier.groupby("run").recovery.mean()
                mean, low, high = mean_ci(means.to_numpy(), 1 - alpha)
                rows.append({"score": score, "arm": arm, "attack": attack, "tier": name, "n_runs": int(means.notna().sum()),
                             "n_samples": len(in_tier), "n_defined": int(in_tier.recovery.notna().sum()),
                             "recovery": mean, "ci_low": low, "ci_high": high})
    table = pd.DataFrame(rows)
    if {"replicate", "seed"} <= set(samples.columns):  # every arm: one value per (replicate, seed) unit
        units = samples.groupby("run", sort=False)[["replicate", "seed"]].first()
        arms = table[table.arm != "all"].copy()
        pooled = []
        for score in scores:
            for attack, part in samples.groupby("attack", sort=False):
                ranked = pd.concat([pd.DataFrame({"run": run, "tier": difficulty_tiers(one[score].to_numpy(),
                                                                                        n_tiers=len(TIER_NAMES), seed=seed),
                                                  "recovery": one.recovery.to_numpy()})
                                    for run, one in part.groupby("run", sort=False)])
                for t, name in enumerate(TIER_NAMES):
                    means = ranked[ranked.tier == t].groupby("run").recovery.mean()
                    by_unit = means.groupby([units.replicate.reindex(means.index), units.seed.reindex(means.index)]).mean()
                    mean, low, high = mean_ci(by_unit.to_numpy(), 1 - alpha)
                    pooled.append({"score": score, "arm": "all", "attack": attack, "tier": name,
                                   "n_runs": int(means.notna().sum()), "n_samples": int((ranked.tier == t).sum()),
                                   "n_defined": int(ranked[ranked.tier == t].recovery.notna().sum()),
                                   "recovery": mean, "ci_low": low, "ci_high": high})
        table = pd.concat([pd.DataFrame(pooled), arms], ignore_index=True)
    return table


def difficulty_correlation(samples: pd.DataFrame, scores: list[str], *, alpha: float = 0.05, smallest_rho: float = 0.1,
                           seed: int = 0, holm_family: int | None = None) -> pd.DataFrame:
    """Do harder samples recover more? Per run, Spearman's rho between a difficulty score and
    recovery. Runs of one replicate and seed share their model and samples, so the unit of
    inference is (replicate, seed), with rho averaged over its arms; over units, the sign-flip
    test of rho = 0 and its interval, Holm-corrected over every attack x score, and the four words
    against `smallest_rho`. Per-arm rows (unit means of that arm alone) are descriptive.
    `holm_family`: read the tests as part of a family this large (Bonferroni, Holm's first step:
    how the calibration simulates one test of the study's family)."""
    rows = []
    for score in scores:
        for attack, part in samples.groupby("attack", sort=False):
            per_run = _spearman_per_run(part, score, ["replicate", "seed", "arm"])
            units = per_run.groupby(["replicate", "seed"]).rho.mean().dropna()
            test = sign_flip_test(units.to_numpy(), alpha=alpha, seed=seed)
            rows.append({"score": score, "attack": attack, "arm": "all", "n_units": test["n_units"], "rho": test["mean"],
                         "ci_low": test["ci_low"], "ci_high": test["ci_high"], "p_value": test["p_value"],
                         "p_floor": test["p_floor"]})
            for arm, one in per_run.groupby("arm", sort=False):
                mean, low, high = mean_ci(one.rho.to_numpy(), 1 - alpha)
                rows.append({"score": score, "attack": attack, "arm": arm, "n_units": int(one.rho.notna().sum()),
                             "rho": mean, "ci_low": low, "ci_high": high, "p_value": np.nan, "p_floor": np.nan})
    table = pd.DataFrame(rows)
    tested = table.arm == "all"
    table["p_holm"] = np.nan
    p = table.loc[tested, "p_value"].to_numpy()
    table.loc[tested, "p_holm"] = holm(p) if holm_family is None else np.minimum(1.0, p * holm_family)
    table["verdict"] = ""
    for i in table.index[tested]:
        row = table.loc[i]
        word = effect_verdict(row.ci_low, row.ci_high, smallest_rho, direction=1)
        if word in (SUPPORTED, CONTRADICTED) and not row.p_holm < alpha:
            word = INCONCLUSIVE  # the unadjusted interval excludes 0, the family's correction does not
        table.loc[i, "verdict"] = word
    return table


def _spearman_per_run(part: pd.DataFrame, score: str, keys: list[str]) -> pd.DataFrame:
    """Spearman's rho of `score` with recovery within each group of `keys` (rows where both are
    defined; NaN with fewer than 3 or a constant column): Pearson's r of average ranks, as
    scipy.stats.spearmanr computes it, for every group at once (the calibration calls this
    thousands of times)."""
    d = part.loc[part[score].notna() & part.recovery.notna(), [*keys, score, "recovery"]]
    grouped = d.groupby(keys, sort=False)
    x, y = grouped[score].rank().to_numpy(), grouped["recovery"].rank().to_numpy()
    moments = d[keys].assign(x=x, y=y, xy=x * y, xx=x * x, yy=y * y).groupby(keys, sort=False)
    m = moments.mean().join(moments.size().rename("n"))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (m.xy - m.x * m.y) / np.sqrt((m.xx - m.x ** 2) * (m.yy - m.y ** 2))
    rho = rho.where((m.n > 2) & np.isfinite(rho))
    every = part[keys].drop_duplicates()  # groups with nothing defined keep a NaN row
    return every.merge(rho.rename("rho").reset_index(), on=keys, how="left").reset_index(drop=True)


MEASURES = ("loglik", "truth_ratio", "rouge_l")  # what unlearning lowers and an attack may bring back
# Each measure on the scale recovery is read on (the truth ratio, a ratio of probabilities, on a log
# scale, as log-likelihoods are), and the smallest change unlearning must have made for a sample's
# recovery to be defined, in that scale's units: nats per token, nats, ROUGE-L.
SCALES = {"loglik": lambda x: x, "truth_ratio": np.log, "rouge_l": lambda x: x}
MIN_DROP = {"loglik": 0.05, "truth_ratio": 0.05, "rouge_l": 0.05}


def _min_drop(min_drop, measure: str) -> float:
    """One threshold for every measure, or each measure's own (a mapping: MIN_DROP's keys)."""
    if not isinstance(min_drop, dict):
        return float(min_drop)
    if measure not in min_drop:
        raise ValueError(f"min_drop has no threshold for {measure!r}; give one for each of {list(MEASURES)}")
    return float(min_drop[measure])


def sample_recovery(before: pd.DataFrame, unlearned: pd.DataFrame, attacked: pd.DataFrame, *,
                    min_drop: float | dict = MIN_DROP) -> pd.DataFrame:
    """Per (attack, forget sample, measure): its value on the model before unlearning (the
    target), after unlearning and after the attack, on the measure's scale (`SCALES`: the truth
    ratio's log), and the recovery, defined where unlearning moved the sample by the measure's
    `min_drop` (one number, or one per measure). `before` and `unlearned` are the evaluation's
    forget rows (sample_id and the measures); `attacked` is `robustness.attack`'s frame."""
    measures = [m for m in MEASURES if m in attacked and m in before and m in unlearned]
    base = before.set_index("sample_id")[measures]
    after = unlearned.set_index("sample_id")[measures]
    rows = []
    for name, part in attacked.groupby("attack", sort=False):
        part = part.set_index("sample_id")
        for m in measures:
            scale = SCALES[m]
            b, u, a = (scale(np.asarray(x, dtype=float))
                       for x in (base[m].reindex(part.index), after[m].reindex(part.index), part[m]))
            rows.append(pd.DataFrame({"attack": name, "sample_id": part.index, "measure": m, "before": b,
                                      "unlearned": u, "attacked": a,
                                      "recovery": recovery(b, u, a, min_drop=_min_drop(min_drop, m))}))
    return pd.concat(rows, ignore_index=True)


def run_recovery(samples: pd.DataFrame, *, min_drop: float | dict = MIN_DROP) -> pd.DataFrame:
    """One run's pooled recovery per (attack, measure), from `sample_recovery`'s frame (its values
    already on each measure's scale)."""
    return pd.DataFrame([{"attack": attack, "measure": measure,
                          "recovery": pooled_recovery(part.before, part.unlearned, part.attacked,
                                                      min_drop=_min_drop(min_drop, measure))}
                         for (attack, measure), part in samples.groupby(["attack", "measure"], sort=False)])


def control_changes(plain: pd.DataFrame, attacked: pd.DataFrame) -> pd.DataFrame:
    """Per (attack, sample, measure): what an attack changes on a control model, on the measure's
    scale: the relearning attacks on the retain model (which never saw the forget set: what
    relearning teaches on its own), the quantizations on the target (what rounding alone does).
    `plain` is the control's own evaluation (sample_id and the measures)."""
    measures = [m for m in MEASURES if m in attacked and m in plain]
    base = plain.set_index("sample_id")[measures]
    rows = []
    for name, part in attacked.groupby("attack", sort=False):
        part = part.set_index("sample_id")
        for m in measures:
            b, a = (SCALES[m](np.asarray(x, dtype=float)) for x in (base[m].reindex(part.index), part[m]))
            rows.append(pd.DataFrame({"attack": name, "sample_id": part.index, "measure": m, "change": a - b}))
    return pd.concat(rows, ignore_index=True)


def beyond_control(samples: pd.DataFrame, changes: pd.DataFrame, *, min_drop: float | dict = MIN_DROP
                   ) -> pd.DataFrame:
    """One run's pooled recovery per (attack, measure) beside its control's: the control model's
    change under the same attack (`control_changes`), summed over the same samples and divided by
    what this run's unlearning removed from them, is what the attack would bring back with
    nothing forgotten to uncover (teaching, rounding damage); `beyond_control` = recovery -
    control_recovery. `samples` is the run's `sample_recovery` frame."""
    merged = samples.merge(changes, on=["attack", "sample_id", "measure"], how="left", validate="one_to_one")
    rows = []
    for (attack, measure), part in merged.groupby(["attack", "measure"], sort=False):
        threshold = _min_drop(min_drop, measure)
        ok = ~(part[["before", "unlearned", "attacked", "change"]].isna().any(axis=1))
        drop = float((part.before - part.unlearned)[ok].sum())
        defined = ok.sum() > 0 and abs(drop) >= ok.sum() * threshold
        run = pooled_recovery(part.before, part.unlearned, part.attacked, min_drop=threshold)
        control = float(part.change[ok].sum()) / drop if defined else float("nan")
        rows.append({"attack": attack, "measure": measure, "recovery": run, "control_recovery": control,
                     "beyond_control": run - control})
    return pd.DataFrame(rows)


LESS_ROBUST, MORE_ROBUST, EQUIVALENT, UNCLEAR = "less robust", "more robust", "equivalent", "unclear"


def robustness_comparison(runs: pd.DataFrame, *, alpha: float = 0.05, power: float = 0.8,
                          smallest: float = 0.1) -> pd.DataFrame:
    """Does MRD weighting leave forgetting less robust? `runs` has one row per (run, attack):
    replicate, seed, algorithm, sampler, attack and the run's pooled `recovery`. Each MRD-weighted
    sampler is paired with uniform on the same replicate and seed, as C4 pairs them; per
    (algorithm, sampler, attack) the paired differences (weighted - uniform) get the sign-flip
    test and its interval. Holm's correction spans every row (a family of its own: joined to
    C4's, its size would push every p beyond the floor that C4's few pairs allow), and `mde` is
    the difference the design detects with `power` at Holm's first level. Words: `less robust`
    (more comes back under MRD weighting, Holm p < alpha), `more robust`, `equivalent` (interval
    within +/- `smallest`), else `unclear`."""
    rows = []
    pairs = [(arm, versus) for arm, versus, family in comparisons(list(dict.fromkeys(runs.sampler)))
             if family == "paper"]
    for (algorithm, attack), block in runs.groupby(["algorithm", "attack"], sort=False):
        indexed = block.set_index(["replicate", "seed", "sampler"])
        wide, present = indexed.recovery.unstack("sampler"), indexed.recovery.isna().unstack("sampler").notna()
        for arm, versus in pairs:
            if arm not in wide or versus not in wide:
                continue
            both = present[arm] & present[versus]  # the pairs: both runs exist (a NaN recovery stays a pair)
            paired = pd.DataFrame({"recovery": wide[arm][both], "recovery_versus": wide[versus][both]})
            if not len(paired):
                continue
            test = pair_metric(paired, "recovery", alpha)  # C4's paired test, on this metric
            rows.append({"algorithm": algorithm, "sampler": arm, "versus": versus, "attack": attack,
                         "n_pairs": test["n_units"], "diff": test["mean"], "ci_low": test["ci_low"],
                         "ci_high": test["ci_high"], "p": test["p_value"], "p_floor": test["p_floor"],
                         "sd": test["sd"]})
    table = pd.DataFrame(rows)
    if table.empty:  # no weighted arm paired with uniform: the table's columns, no rows
        return pd.DataFrame(columns=["algorithm", "sampler", "versus", "attack", "n_pairs", "diff", "ci_low",
                                     "ci_high", "p", "p_floor", "sd", "p_holm", "holm_family_size", "mde", "word"])
    table["p_holm"] = holm(table.p.to_numpy())
    family = int(table.p.notna().sum())
    table["holm_family_size"] = family
    table["mde"] = [minimum_detectable_effect(sd, int(n), alpha=alpha / max(family, 1), power=power)
                    for sd, n in zip(table.sd, table.n_pairs)]
    table["word"] = [LESS_ROBUST if p < alpha and diff > 0 else MORE_ROBUST if p < alpha and diff < 0
                     else EQUIVALENT if -smallest < low and high < smallest else UNCLEAR
                     for p, diff, low, high in zip(table.p_holm.fillna(1.0), table["diff"], table.ci_low, table.ci_high)]
    return table


def robustness_verdict(words) -> str:
    """The claim "MRD weighting leaves forgetting less robust", over every row's word."""
    words = list(words)
    less, more = LESS_ROBUST in words, MORE_ROBUST in words
    if not words:
        return "not tested (no weighted sampler or no attack)"
    if less and more:
        return "mixed"
    if less:
        return SUPPORTED
    if more:
        return CONTRADICTED
    if all(w == EQUIVALENT for w in words):
        return NO_EFFECT
    return INCONCLUSIVE


def _simulated_samples(shape: pd.DataFrame, n_samples: int, rho: float, rng) -> pd.DataFrame:
    """Per run of `shape` (replicate, seed, arm) and sample: a difficulty score and a recovery,
    Gaussian with Spearman correlation `rho` (Pearson 2 sin(pi rho / 6)); the samples' scores are
    shared by the runs of one replicate, as one replicate's MRD is."""
    r = 2 * np.sin(np.pi * rho / 6)
    shape = shape.reset_index(drop=True)
    replicates = shape.replicate.to_numpy()
    _, which = np.unique(replicates, return_inverse=True)
    scores = rng.normal(size=(which.max() + 1, n_samples))[which]  # one score per replicate's samples
    values = r * scores + np.sqrt(1 - r * r) * rng.normal(size=scores.shape)
    return pd.DataFrame({"replicate": np.repeat(replicates, n_samples), "seed": np.repeat(shape.seed.to_numpy(), n_samples),
                         "arm": np.repeat(shape.arm.to_numpy(), n_samples), "attack": "simulated",
                         "score": scores.ravel(), "recovery": values.ravel()})


def _simulated_runs(runs: pd.DataFrame, sd: float, effect: float, rng) -> pd.DataFrame:
    """`runs`' design (replicate, seed, algorithm, sampler, attack) with recoveries: one shared
    value per (replicate, seed, algorithm, attack) (the pair's model), noise of `sd` / sqrt(2) per
    run (so a pair's difference has sd `sd`), and `effect` added to every weighted sampler."""
    out = runs[["replicate", "seed", "algorithm", "sampler", "attack"]].copy()
    shared = out.groupby(["replicate", "seed", "algorithm", "attack"]).ngroup().to_numpy()
    base = rng.normal(size=shared.max() + 1)[shared]
    out["recovery"] = base + rng.normal(0, sd / np.sqrt(2), len(out)) + np.where(out.sampler != "uniform", effect, 0.0)
    return out


def calibrate_rules(samples: pd.DataFrame, runs: pd.DataFrame, *, alpha: float, power: float, smallest_rho: float,
                    smallest: float, simulations: int, power_simulations: int, seed: int = 0,
                    correlation_family: int = 1) -> pd.DataFrame:
    """The two robustness rules run on studies simulated in this study's design: the
    difficulty-recovery rule (`difficulty_correlation`: its runs, units and samples, one score,
    one attack, at the level of the study's Holm family of `correlation_family` tests) under rho 0
    and at `smallest_rho`; the robustness comparison
    (`robustness_comparison`: every algorithm x sampler x attack, paired differences with one SD,
    that of every weighted-minus-uniform difference of the study pooled over algorithms and
    attacks, 0.1 with fewer than 3) under no difference and with `smallest` planted in every
    weighted arm.
    Rates: false verdicts (any word but no effect / inconclusive) under no effect, and 'supported'
    at the planted effect, each with its one-sided 95% upper bound (Clopper-Pearson)."""
    rng = np.random.default_rng(seed)
    shape = samples[["replicate", "seed", "arm"]].drop_duplicates()
    n = int(samples.groupby(["replicate", "seed", "arm"]).size().max())
    sds = runs.get("sd", pd.Series(dtype=float))
    observed = runs.assign(_pair=runs.groupby(["replicate", "seed", "algorithm", "attack"]).ngroup())
    uniform = observed[observed.sampler == "uniform"].set_index("_pair").recovery
    weighted = observed[observed.sampler != "uniform"]
    diffs = (weighted.recovery.to_numpy() - uniform.reindex(weighted._pair).to_numpy()) if len(uniform) else []
    sd = float(np.nanstd(diffs, ddof=1)) if np.isfinite(diffs).sum() > 2 else float(sds.median()) if len(sds) else 0.1
    sd = sd if np.isfinite(sd) and sd > 0 else 0.1

    def correlation(rho: float) -> str:
        sim = _simulated_samples(shape, n, rho, rng)
        return difficulty_correlation(sim, ["score"], alpha=alpha, smallest_rho=smallest_rho, seed=seed,
                                      holm_family=correlation_family).verdict.iloc[0]

    def comparison(effect: float) -> str:
        table = robustness_comparison(_simulated_runs(runs, sd, effect, rng), alpha=alpha, power=power,
                                      smallest=smallest)
        return robustness_verdict(table.word)

    rules = [("difficulty-recovery", correlation, smallest_rho)]
    if len(robustness_comparison(runs, alpha=alpha)):  # a study without a paired arm has nothing to calibrate
        rules.append(("robustness MRD vs uniform", comparison, smallest))
    rows = []
    for rule, decide, planted in rules:
        for condition, effect, count in (("no effect", 0.0, simulations), ("smallest effect", planted, power_simulations)):
            words = [decide(effect) for _ in range(count)]
            hits = sum(w in (SUPPORTED, CONTRADICTED, "mixed") for w in words) if effect == 0 else \
                sum(w == SUPPORTED for w in words)
            upper = stats.binomtest(hits, count).proportion_ci(0.90).high  # one-sided 95%
            rows.append({"rule": rule, "condition": condition, "effect": effect, "simulations": count,
                         "rate": hits / count, "upper95": upper,
                         "measures": "false verdicts" if effect == 0 else "power",
                         **({"sd": sd} if rule.startswith("robustness") else
                            {"n_samples": n, "holm_family_size": correlation_family})})
    return pd.DataFrame(rows)
