"""Verdicts as data: each claim's verdict from constructed tables with a known answer, the paired
comparison of samplers, the four words against the smallest effect of interest, and the
agreement across replicates. The findings of a review that fed no-effect data through these
functions each have a test here or in test_statistics / test_calibration."""
import numpy as np
import pandas as pd
import pytest

from mrd_unlearning import claims


def _runs(effect: dict[str, float], replicates=3, seeds=3, noise=0.01, seed=0) -> pd.DataFrame:
    """Unlearning table rows: uniform and mrd runs for GA; `effect` adds to the mrd runs' metrics."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(replicates):
        for s in range(seeds):
            base = {m: rng.uniform(0.2, 0.6) for m in claims.COMPARED}
            for sampler in ("uniform", "mrd"):
                row = {"replicate": r, "algorithm": "ga", "sampler": sampler, "seed": s, "steps_censored": False,
                       "level_reached": True}
                for m, v in base.items():
                    row[m] = v + (effect.get(m, 0.0) if sampler == "mrd" else 0.0) + rng.normal(0, noise)
                rows.append(row)
    return pd.DataFrame(rows)


SMALLEST = {"forget_quality": 0.0112, "model_utility": 0.0272}


def test_compare_samplers_pairs_by_replicate_and_seed():
    table = _runs({"forget_quality": 0.1, "model_utility": 0.05})
    out = claims.compare_samplers(table, smallest=SMALLEST)
    pooled = out[out.replicate == "pooled"].iloc[0]
    paired = table.pivot_table(index=["replicate", "seed"], columns="sampler", values="forget_quality")
    assert pooled.forget_quality_diff == pytest.approx((paired["mrd"] - paired["uniform"]).mean())
    assert pooled.n_pairs == 9 and pooled.n_units == 9 and pooled.p_floor == pytest.approx(2 / 2 ** 9)
    assert pooled.forget_quality_ci_low > 0 and pooled.model_utility_ci_low > 0
    assert claims.pair_verdict(pooled, 0.05, smallest=SMALLEST) == "supported"
    per_replicate = out[out.replicate != "pooled"]
    assert list(per_replicate.replicate) == ["0", "1", "2"] and (per_replicate.unit == "seed").all()
    # 3 seeds: no p below 0.25 is possible, so a replicate alone cannot decide
    assert (per_replicate.p_floor == 0.25).all()
    assert all(claims.pair_verdict(r, 0.05, smallest=SMALLEST) == "inconclusive" for _, r in per_replicate.iterrows())


def test_one_holm_family_spans_both_metrics_and_every_pair():
    """Finding: completeness and utility were each Holm-corrected on their own and read with
    either-one logic (error about twice alpha). Now one family of 2 metrics x pairs."""
    from mrd_unlearning.statistics import holm

    table = _runs({})
    two = pd.concat([table, table[table.sampler == "mrd"].assign(sampler="mrd_curriculum")])
    pooled = claims.compare_samplers(two, smallest=SMALLEST)
    pooled = pooled[pooled.replicate == "pooled"]
    joint = holm(np.concatenate([pooled.forget_quality_p, pooled.model_utility_p]))
    assert list(pooled.forget_quality_p_holm) + list(pooled.model_utility_p_holm) == pytest.approx(list(joint))
    assert (pooled.holm_family_size == 4).all()


def test_the_minimum_detectable_effect_is_stated_at_holms_level_in_units_of_the_smallest_effect():
    """Finding: the MDE used the unadjusted alpha while decisions used Holm's."""
    from mrd_unlearning.statistics import minimum_detectable_effect

    table = _runs({}, noise=0.05)
    row = claims.compare_samplers(table, smallest=SMALLEST).iloc[0]
    expected = minimum_detectable_effect(row.model_utility_sd, 9, alpha=0.05 / 2)
    assert row.model_utility_mde == pytest.approx(expected)
    assert row.model_utility_mde_ratio == pytest.approx(expected / 0.0272)
    assert row.model_utility_mde > minimum_detectable_effect(row.model_utility_sd, 9, alpha=0.05)


def test_pair_verdicts_in_the_four_words():
    def row(fq, mu, fq_ci=(0.05, 0.15), mu_ci=(0.05, 0.15)):
        (fq_diff, fq_p), (mu_diff, mu_p) = fq, mu
        return pd.Series({"forget_quality_diff": fq_diff, "forget_quality_p": fq_p, "forget_quality_p_holm": fq_p,
                          "forget_quality_ci_low": fq_ci[0], "forget_quality_ci_high": fq_ci[1],
                          "model_utility_diff": mu_diff, "model_utility_p": mu_p, "model_utility_p_holm": mu_p,
                          "model_utility_ci_low": mu_ci[0], "model_utility_ci_high": mu_ci[1]})

    verdict = lambda r: claims.pair_verdict(r, 0.05, smallest=SMALLEST)  # noqa: E731
    assert verdict(row((0.1, 0.01), (0.1, 0.01))) == "supported"
    assert verdict(row((0.1, 0.01), (0.1, 0.5), mu_ci=(-0.1, 0.3))) == "partly supported"
    assert verdict(row((0.1, 0.01), (-0.1, 0.01))) == "mixed"
    assert verdict(row((-0.1, 0.01), (0.1, 0.5), mu_ci=(-0.1, 0.3))) == "contradicted"
    # neither detectable: equivalence only where both CIs lie inside +/- the smallest effects
    assert verdict(row((0.001, 0.6), (0.0, 0.7), (-0.005, 0.01), (-0.02, 0.02))) == "no effect of interesting size"
    assert verdict(row((0.001, 0.6), (0.0, 0.7), (-0.005, 0.02), (-0.02, 0.02))) == "inconclusive"
    assert verdict(row((0.1, np.nan), (0.1, 0.01))) == "inconclusive"


@pytest.mark.parametrize("verdicts, expected", [
    (["supported", "supported"], "supported"),
    (["supported", "inconclusive"], "partly supported"),
    (["partly supported", "no effect of interesting size"], "partly supported"),
    (["contradicted", "inconclusive"], "contradicted"),
    (["supported", "contradicted"], "mixed"),
    (["no effect of interesting size", "no effect of interesting size"], "no effect of interesting size"),
    (["no effect of interesting size", "inconclusive"], "inconclusive"),
    ([], "not tested (no weighted sampler)"),
])
def test_c4_overall_verdict(verdicts, expected):
    assert claims.c4_verdict(verdicts) == expected


def test_absence_of_evidence_is_not_evidence_of_absence():
    """Finding: C2's 0.02 [-0.36, 0.41] read 'not supported' though it includes rho 0.4."""
    assert claims.c2_verdict(-0.36, 0.41, 0.3) == "inconclusive"
    assert claims.c2_verdict(-0.1, 0.2, 0.3) == "no effect of interesting size"
    assert claims.c2_verdict(0.1, 0.5, 0.3) == "supported"
    assert claims.c2_verdict(-0.5, -0.1, 0.3) == "contradicted"
    assert claims.c2_verdict(np.nan, 0.3, 0.3) == "inconclusive"
    assert claims.effect_verdict(-0.5, -0.1, 0.3, direction=0) == "supported"  # C3: any difference


def test_c3_verdict():
    family = pd.DataFrame({"p_holm": [0.2, 0.04], "ci_low": [-0.1, 0.05], "ci_high": [0.2, 0.5]})
    assert claims.c3_verdict(family, 0.05, 0.3) == "supported"
    assert claims.c3_verdict(family.assign(p_holm=[0.2, 0.06]), 0.05, 0.3) == "inconclusive"
    inside = pd.DataFrame({"p_holm": [0.9, 0.8], "ci_low": [-0.2, -0.1], "ci_high": [0.2, 0.25]})
    assert claims.c3_verdict(inside, 0.05, 0.3) == "no effect of interesting size"
    assert claims.c3_verdict(family.iloc[:0], 0.05, 0.3) == "not tested (no known factors or characteristics)"


def test_c1_reads_the_fractional_counts_and_never_calls_a_censored_spread_narrow():
    """Findings: C1 read the integer counts, and could say 'narrow' with a large censored share."""
    rng = np.random.default_rng(0)
    rows = []
    for r in range(2):
        wide = np.exp(rng.uniform(0, 3, 60)) + 1      # p90/p10 far above 2
        narrow = rng.uniform(10, 13, 60)               # p90/p10 about 1.2
        rows += [{"replicate": r, "sample_id": i, "update_count_frac": w, "update_count": np.ceil(w),
                  "censored": False, "update_count_sgd_frac": n, "censored_sgd": False}
                 for i, (w, n) in enumerate(zip(wide, narrow))]
    scores = pd.DataFrame(rows)
    spread = claims.c1_spread(scores, threshold=2.0, n_resamples=300, alpha=0.05)
    pooled = spread[spread.replicate == "pooled"].set_index("ground_truth")
    assert pooled.loc["update_count_frac", "verdict"] == "supported"
    assert pooled.loc["update_count_sgd_frac", "verdict"] == "no effect of interesting size"
    assert claims.c1_verdict(spread) == "supported"  # the primary ground truth: the optimizer's fractional step
    censored = scores.assign(censored_sgd=scores.sample_id < 9)  # 15% censored
    again = claims.c1_spread(censored, threshold=2.0, n_resamples=300, alpha=0.05)
    row = again[(again.replicate == "pooled") & (again.ground_truth == "update_count_sgd_frac")].iloc[0]
    assert row.ci_high < 2.0 and row.verdict == "inconclusive"
    assert claims.spread(np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])) == pytest.approx(10 / 2)


def test_agreement_across_replicates():
    assert claims.agreement("inconclusive", {"0": "inconclusive", "1": "inconclusive"}) == \
        "inconclusive in 2 of 2 replicates"
    assert claims.agreement("inconclusive", {"0": "supported", "1": "inconclusive", "2": "inconclusive"}) == \
        "inconclusive in 2, supported in 1 of 3 replicates"


def test_the_fields_arms_are_compared_with_uniform_and_with_mrd_and_corrected_apart():
    table = _runs({"forget_quality": 0.1})
    mrd = table[table.sampler == "mrd"]
    arms = pd.concat([table, mrd.assign(sampler="mrd@loss", forget_quality=mrd.forget_quality + 0.05),
                      mrd.assign(sampler="sorted")])
    assert claims.comparisons(["uniform", "mrd", "mrd@loss", "sorted"]) == [
        ("mrd", "uniform", "paper"), ("mrd@loss", "uniform", "field"), ("mrd@loss", "mrd", "field"),
        ("sorted", "uniform", "field")]
    out = claims.compare_samplers(arms)
    pooled = out[out.replicate == "pooled"].set_index(["sampler", "versus"])
    assert pooled.loc[("mrd@loss", "mrd")].forget_quality_diff == pytest.approx(0.05)
    assert pooled.loc[("mrd@loss", "uniform")].forget_quality_diff == pytest.approx(
        pooled.loc[("mrd", "uniform")].forget_quality_diff + 0.05)
    # the paper's family is alone in its Holm correction: its p is unchanged by the field's arms
    alone = claims.compare_samplers(table)
    assert pooled.loc[("mrd", "uniform")].forget_quality_p_holm == pytest.approx(
        alone[alone.replicate == "pooled"].forget_quality_p_holm.iloc[0])
    field = pooled[pooled.family == "field"]
    assert field.forget_quality_p_holm.max() <= 1 and len(field) == 3


def test_steps_nobody_took_are_not_estimable_and_equal_forgetting_only_counts_runs_that_got_there():
    """Finding: with every run censored, steps-to-forget gave 0 [0, 0], p 1; level_* metrics of runs
    that never reached the level were compared as 'equal forgetting'."""
    table = _runs({"level_model_utility": 0.2}).assign(steps_censored=True, steps_to_forget=10.0)
    table.loc[(table.seed == 0), "level_reached"] = False
    row = claims.compare_samplers(table).iloc[0]
    assert np.isnan(row.steps_to_forget_diff) and np.isnan(row.steps_to_forget_p)
    assert row.level_n_pairs == 6  # seed 0 of each replicate did not reach the level
    reached = table[table.level_reached]
    pairs = reached.pivot_table(index=["replicate", "seed"], columns="sampler", values="level_model_utility")
    assert row.level_model_utility_diff == pytest.approx((pairs["mrd"] - pairs["uniform"]).mean())


def test_difficulty_by_group_by_hand():
    """Two groups of two: counts (1, 3) and (5, 7): grand mean 4, SS_total 20, SS_between 16
    (eta squared 0.8); MS_between 16, MS_within 4 / 2 = 2, F = 8, ICC(1) = (8 - 1) / (8 + 1) = 7/9."""
    scores = pd.DataFrame({"replicate": 0, "sample_id": range(4), "group": ["a", "a", "b", "b"],
                           "update_count_frac": [1.0, 3.0, 5.0, 7.0]})
    row = claims.difficulty_by_group(scores).iloc[0]
    assert row.eta_squared == pytest.approx(0.8) and row.icc == pytest.approx(7 / 9) and row.n_groups == 2
    assert row.eta_squared_no_effect == pytest.approx(1 / 3) and row.icc_ci_low < row.icc < row.icc_ci_high
    assert claims.difficulty_by_group(scores.assign(group=["a", "b", "c", "d"])).empty  # every sample alone
    # the replicates share their samples: one test on each sample's mean over them
    two = pd.concat([scores, scores.assign(replicate=1, update_count_frac=[3.0, 1.0, 7.0, 5.0])])
    assert claims.difficulty_by_group(two).iloc[0].icc == pytest.approx(1.0)  # means 2, 2, 6, 6


def test_the_between_group_share_is_unbiased_under_no_group_effect():
    """Finding: raw eta squared averages (G - 1) / (n - 1) = 0.11 for 8 x 8 when groups do not
    differ at all, so '7% between people' was below noise. ICC(1) averages about 0 then."""
    rng = np.random.default_rng(1)
    groups = np.repeat([f"p{g}" for g in range(8)], 8)
    rows = [claims.difficulty_by_group(pd.DataFrame({"replicate": 0, "sample_id": range(64), "group": groups,
                                                     "update_count_frac": rng.normal(size=64)})).iloc[0]
            for _ in range(300)]
    assert np.mean([r.eta_squared for r in rows]) == pytest.approx(7 / 63, abs=0.015)
    assert abs(np.mean([r.icc for r in rows])) < 0.02
    assert np.mean([r.kruskal_p < 0.05 for r in rows]) < 0.09


def test_scope_names_the_groups_when_they_are_few():
    assert claims.scope(2, 40, "authors") == "within these 2 authors"
    assert claims.scope(8, 40, "authors") == "within these 8 authors" and claims.scope(10, 40, "authors") == ""
    assert claims.scope(60, 120, "authors") == "" and claims.scope(40, 40, "groups") == ""
