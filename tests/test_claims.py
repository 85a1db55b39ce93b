"""Verdicts as data: each claim's verdict from constructed tables with a known answer, the paired
comparison of samplers, and the agreement across replicates."""
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
                row = {"replicate": r, "algorithm": "ga", "sampler": sampler, "seed": s, "steps_censored": False}
                for m, v in base.items():
                    row[m] = v + (effect.get(m, 0.0) if sampler == "mrd" else 0.0) + rng.normal(0, noise)
                rows.append(row)
    return pd.DataFrame(rows)


def test_compare_samplers_pairs_by_replicate_and_seed():
    table = _runs({"forget_quality": 0.1, "model_utility": 0.05})
    out = claims.compare_samplers(table)
    pooled = out[out.replicate == "pooled"].iloc[0]
    paired = table.pivot_table(index=["replicate", "seed"], columns="sampler", values="forget_quality")
    assert pooled.forget_quality_diff == pytest.approx((paired["mrd"] - paired["uniform"]).mean())
    assert pooled.n_pairs == 9 and pooled.n_units == 3 and pooled.unit == "replicate"
    assert pooled.forget_quality_ci_low > 0 and pooled.model_utility_ci_low > 0
    assert claims.pair_verdict(pooled, 0.05) == "supported"
    per_replicate = out[out.replicate != "pooled"]
    assert list(per_replicate.replicate) == ["0", "1", "2"] and (per_replicate.unit == "seed").all()
    assert (per_replicate.n_pairs == 3).all()


def test_pair_verdicts_follow_the_holm_corrected_directions():
    def row(fq_diff, fq_p, mu_diff, mu_p):
        return pd.Series({"forget_quality_diff": fq_diff, "forget_quality_p": fq_p, "forget_quality_p_holm": fq_p,
                          "model_utility_diff": mu_diff, "model_utility_p": mu_p, "model_utility_p_holm": mu_p})

    assert claims.pair_verdict(row(0.1, 0.01, 0.1, 0.01), 0.05) == "supported"
    assert claims.pair_verdict(row(0.1, 0.01, 0.1, 0.5), 0.05) == "partly supported"
    assert claims.pair_verdict(row(0.1, 0.01, -0.1, 0.01), 0.05) == "mixed"
    assert claims.pair_verdict(row(-0.1, 0.01, 0.1, 0.5), 0.05) == "contradicted"
    assert claims.pair_verdict(row(0.1, 0.2, -0.1, 0.3), 0.05) == "not supported"
    assert claims.pair_verdict(row(0.1, np.nan, 0.1, 0.01), 0.05) == "inconclusive"


def test_no_effect_is_not_supported_and_holm_counts_every_pair():
    table = _runs({})
    two = pd.concat([table, table[table.sampler == "mrd"].assign(sampler="mrd_curriculum")])
    out = claims.compare_samplers(two)
    pooled = out[out.replicate == "pooled"]
    assert len(pooled) == 2
    # the two pairs share their differences: Holm doubles the smaller p (capped at 1)
    assert pooled.forget_quality_p_holm.iloc[0] == pytest.approx(min(1.0, 2 * pooled.forget_quality_p.iloc[0]))
    assert claims.c4_verdict([claims.pair_verdict(r, 0.05) for _, r in pooled.iterrows()]) == "not supported"


@pytest.mark.parametrize("verdicts, expected", [
    (["supported", "supported"], "supported"),
    (["supported", "not supported"], "partly supported"),
    (["partly supported", "not supported"], "partly supported"),
    (["contradicted", "not supported"], "contradicted"),
    (["supported", "contradicted"], "mixed"),
    (["not supported", "inconclusive"], "not supported"),
    ([], "not tested (no weighted sampler)"),
])
def test_c4_overall_verdict(verdicts, expected):
    assert claims.c4_verdict(verdicts) == expected


def test_c1_spread_and_verdict():
    rng = np.random.default_rng(0)
    rows = []
    for r in range(2):
        wide = np.exp(rng.uniform(0, 3, 60)).round() + 1      # p90/p10 far above 2
        narrow = rng.integers(10, 13, 60)                       # p90/p10 about 1.2
        rows += [{"replicate": r, "sample_id": i, "update_count": w, "censored": False, "update_count_sgd": n,
                  "censored_sgd": False} for i, (w, n) in enumerate(zip(wide, narrow))]
    spread = claims.c1_spread(pd.DataFrame(rows), threshold=2.0, n_resamples=300, alpha=0.05)
    pooled = spread[spread.replicate == "pooled"].set_index("ground_truth")
    assert pooled.loc["update_count", "variation"] == "wide" and pooled.loc["update_count_sgd", "variation"] == "narrow"
    assert claims.c1_verdict(list(pooled.variation)) == "partly supported"
    assert claims.c1_verdict(["wide", "wide"]) == "supported"
    assert claims.c1_verdict(["narrow", "narrow"]) == "not supported"
    assert claims.c1_verdict(["narrow", "unclear"]) == "inconclusive"
    assert claims.spread(np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])) == pytest.approx(10 / 2)


def test_c2_and_c3_verdicts():
    assert claims.ci_verdict(0.1, 0.5) == "supported"
    assert claims.ci_verdict(-0.5, -0.1) == "contradicted"
    assert claims.ci_verdict(-0.1, 0.3) == "not supported"
    assert claims.ci_verdict(np.nan, 0.3) == "inconclusive"
    factors = pd.DataFrame({"p_holm": [0.2, 0.04]})
    assert claims.c3_verdict(factors, 0.05) == "supported"
    assert claims.c3_verdict(factors.assign(p_holm=[0.2, 0.06]), 0.05) == "not supported"
    assert claims.c3_verdict(factors.iloc[:0], 0.05) == "not tested (no known factors or characteristics)"


def test_agreement_across_replicates():
    assert claims.agreement("not supported", {"0": "not supported", "1": "not supported"}) == \
        "not supported in 2 of 2 replicates"
    assert claims.agreement("not supported", {"0": "supported", "1": "not supported", "2": "not supported"}) == \
        "not supported in 2, supported in 1 of 3 replicates"


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


def test_difficulty_by_group_by_hand():
    """Two groups of two: counts (1, 3) and (5, 7): grand mean 4, SS_total 20, SS_between
    2 x 2^2 + 2 x 2^2 = 16, so 0.8 of the variance lies between groups."""
    from mrd_unlearning.claims import difficulty_by_group

    scores = pd.DataFrame({"replicate": 0, "sample_id": range(4), "group": ["a", "a", "b", "b"],
                           "update_count": [1, 3, 5, 7]})
    table = difficulty_by_group(scores)
    row = table[table.replicate == "0"].iloc[0]
    assert row.between_share == pytest.approx(0.8) and row.n_groups == 2
    assert 0 < row.kruskal_p < 1
    assert difficulty_by_group(scores.assign(group=["a", "b", "c", "d"])).empty  # every sample alone
