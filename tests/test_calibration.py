"""The verdict rules on simulated studies: under no effect they err at most at alpha (the
findings of a review that fed no-effect data through them), with an effect they find it, and the
calibration table states both with a binomial bound."""
import numpy as np
import pytest
from scipy import stats

from mrd_unlearning import calibration as cal

CFG = dict(alpha=0.05, power=0.8, spread_threshold=2.0, bootstrap_resamples=300, smallest_rho=0.3, min_groups=50,
           paper_gains={"forget_quality": 0.0112, "model_utility": 0.0272}, calibration={"c1_planted_spread": 4.0})


def _design(G, m, R, **kw):
    return cal.Design(groups=np.repeat([f"g{g}" for g in range(G)], m), replicates=R, **kw)


def _false(rule, design, value, sims, seed=0):
    rng = np.random.default_rng(seed)
    verdicts = [rule(design, rng, value, CFG, i)[0] for i in range(sims)]
    return sum(v in ("supported", "partly supported", "mixed", "contradicted") for v in verdicts), verdicts


C3_DESIGNS = [(2, 20, 2, 50, "within"), (8, 8, 3, 50, "within"), (10, 20, 1, 50, "within"), (12, 5, 2, 10, "groups")]


def test_c3_is_calibrated_under_no_effect(monkeypatch):
    """The review's designs (2 x 20: 47% false verdicts with group_difficulty in the family; 8 x 8:
    3%; 10 x 20: 8%), resampled within their groups, and a design with enough groups for the
    exact sign-flip test over groups, 100 simulated studies each. Together at most 28 false
    verdicts in 400: a rule at 5% gives more in 3% of such runs, one at twice its level passes in
    2%; each design at most 12 (one at 20% passes in 3%)."""
    from mrd_unlearning import statistics, validation

    used, scheme_of = [], statistics.resampling_scheme
    for module in (statistics, validation):  # the groups path is the group sign-flip test (validation's)
        monkeypatch.setattr(module, "resampling_scheme", lambda *a, **k: used.append(scheme_of(*a, **k)) or used[-1])
    false = {}
    for G, m, R, min_groups, scheme in C3_DESIGNS:
        rng, used[:] = np.random.default_rng(0), []
        design, cfg = _design(G, m, R, n_characteristics=7, icc=0.4), {**CFG, "min_groups": min_groups,
                                                                         "bootstrap_resamples": 200}
        verdicts = [cal._c3(design, rng, 0.0, cfg, i)[0] for i in range(100)]
        false[(G, m)] = sum(v in ("supported", "partly supported", "mixed", "contradicted") for v in verdicts)
        assert set(used) == {scheme}  # the resampling path this design is meant to test is the one that ran
    assert max(false.values()) <= 12 and sum(false.values()) <= 28, false


def test_c4_is_calibrated_under_no_effect():
    """The review's finding: 5 of 40 default-shaped studies (3 replicates x 3 seeds) came out other
    than 'not supported' under no effect. One Holm family over both metrics and every pair; 400
    studies of 2 algorithms x 2 weighted samplers (8 tests): at most 28 false verdicts (a rule at
    5% gives more in 3% of such runs, one at 10% passes in 2%)."""
    design = _design(8, 8, 3, seeds=3, algorithms=("ga", "npo"), weighted=("mrd", "mrd_curriculum"),
                     pair_sd={"forget_quality": 0.05, "model_utility": 0.02})
    false, verdicts = _false(cal._c4, design, False, 400)
    assert false <= 28
    assert set(verdicts) <= {"inconclusive", "no effect of interesting size", "supported", "partly supported",
                             "mixed", "contradicted"}


def test_the_rules_find_effects_that_are_there():
    rng = np.random.default_rng(1)
    design = _design(12, 6, 3, n_characteristics=5, seeds=3, algorithms=("ga",), weighted=("mrd",),
                     pair_sd={"forget_quality": 0.002, "model_utility": 0.005})
    assert sum(cal._c2(design, rng, 0.6, CFG, i)[0] == "supported" for i in range(20)) >= 18
    assert sum(cal._c3(design, rng, 0.6, CFG, i)[0] == "supported" for i in range(20)) >= 16
    assert sum(cal._c1(design, rng, 8.0, CFG, i)[0] == "supported" for i in range(20)) >= 18
    assert sum(cal._c4(design, rng, True, CFG, i)[0] == "supported" for i in range(20)) >= 18


def test_simulated_designs_have_the_planted_effects():
    rng = np.random.default_rng(2)
    design = _design(20, 20, 3, stability=0.5, icc=0.3)
    counts = cal.simulate_counts(design, rng, 4.0).update_count_frac.to_numpy()
    q10, q90 = np.percentile(counts, [10, 90])
    assert q90 / q10 == pytest.approx(4.0, rel=0.2)


def test_morans_expectation_of_spearmans_rho_matches_a_simulation():
    from mrd_unlearning.validation import _spearman

    rng = np.random.default_rng(5)
    for n, p in ((5, 0.3), (8, 0.5), (40, 0.8)):
        x = rng.normal(size=(20000, n))
        y = p * x + np.sqrt(1 - p ** 2) * rng.normal(size=(20000, n))
        assert _spearman(x, y).mean() == pytest.approx(cal.expected_spearman(p, n), abs=0.005)


@pytest.mark.parametrize("design", [_design(8, 8, 3, stability=0.42, icc=0.3),
                                    _design(20, 5, 2, stability=0.8, icc=0.6),
                                    cal.Design(groups=np.arange(60).astype(str), replicates=2, stability=0.6)],
                         ids=["8 groups of 8", "20 groups of 5", "no groups"])
def test_a_planted_rho_reads_as_planted_on_the_statistic_the_verdicts_read(design):
    """C2's rule reads the within-group rho pooled over groups (ranks within groups of a few
    samples: below the population's rho) and over replicates; a rho of 0.3 planted as the
    population's Spearman read about 0.25 on the default's 8 groups of 8. 400 studies: the mean
    within 3 of its standard errors (about 0.004) of 0.3."""
    from mrd_unlearning.statistics import group_blocks
    from mrd_unlearning.validation import _spearman

    _, sizes = group_blocks(design.groups)
    blocks = sizes if len(sizes) < len(design.groups) else None
    rng = np.random.default_rng(7)
    read = [_spearman(*cal.simulate_scores(design, rng, 0.3), blocks=blocks).mean() for _ in range(400)]
    assert np.mean(read) == pytest.approx(0.3, abs=3 * np.std(read) / 20 + 0.002)
    if blocks is not None and blocks[0] == 8:  # the old planting (population Spearman 0.3) reads visibly less
        old = 2 * np.sin(np.pi * 0.3 / 6) / np.sqrt(design.stability)
        assert cal.planted_pearson(design, 0.3) > 1.1 * old


def test_a_verdicts_scope_names_what_its_rule_errs_beyond():
    """Beyond what a rule conditions on (these training runs, these groups, the attributes every
    group shares), a false-verdict rate above alpha narrows its scope; at or below, nothing."""
    import pandas as pd

    table = pd.DataFrame([  # 200 simulations each: 10 false verdicts have a lower bound of 2.7%, 16 of 5.1%
        {"claim": "C1", "condition": "groups differ", "false_verdict_rate": 0.01, "false_equivalence_rate": 0.05},
        {"claim": "C2", "condition": "no effect", "false_verdict_rate": 0.20, "false_equivalence_rate": np.nan},
        {"claim": "C2", "condition": "association varying by training run", "false_verdict_rate": 0.08,
         "false_equivalence_rate": np.nan},
        {"claim": "C2", "condition": "crossed attributes", "false_verdict_rate": 0.075,
         "false_equivalence_rate": np.nan},
        {"claim": "C3", "condition": "crossed attributes", "false_verdict_rate": 0.05,
         "false_equivalence_rate": np.nan}]).assign(simulations=200)
    limits = lambda claim: cal.scope_limits(table, claim, 0.05, unit="8 people", runs=3)  # noqa: E731
    assert limits("C1") == ["these 8 people"]  # one-sided: its false 'no effect' is read against alpha / 2
    assert limits("C2") == ["these 3 training runs"]  # 7.5% could be noise; the no-effect row is its own level
    assert limits("C3") == []
    design = _design(8, 8, 3)
    conditions = [(c, cond) for c, cond, _, _ in cal.beyond_scope(design, CFG)]
    assert conditions == [("C1", "groups differ"), ("C2", "association varying by training run"),
                          ("C3", "association varying by training run"), ("C2", "crossed attributes"),
                          ("C3", "crossed attributes")]
    alone = cal.Design(groups=np.arange(30).astype(str), replicates=1)
    assert cal.beyond_scope(alone, CFG) == []  # one run, no groups: nothing to vary


def test_crossed_attributes_are_shared_across_groups_and_unrelated_between_score_and_truth():
    rng = np.random.default_rng(3)
    design = _design(50, 4, 1, stability=1.0, icc=0.0)
    x, y = zip(*(cal.simulate_scores(design, rng, 0.0, 2, attribute_share=0.5) for _ in range(200)))
    x, y = np.stack(x)[:, 0], np.stack(y)[:, 0]  # (sims, n): the first score, the one replicate
    same_attribute = np.mean([np.corrcoef(v[:, 0::4][:, 0], v[:, 0::4][:, 1])[0, 1] for v in (x, y)])
    assert same_attribute == pytest.approx(0.5, abs=0.1)  # two groups' first samples share half their variance
    assert np.corrcoef(x[:, 0], y[:, 0])[0, 1] == pytest.approx(0.0, abs=0.15)


def test_the_calibration_table_states_rates_with_exact_binomial_bounds():
    design = _design(4, 6, 2, n_characteristics=3, seeds=2, algorithms=("ga",), weighted=("mrd",),
                     pair_sd={"forget_quality": 0.05, "model_utility": 0.05})
    table = cal.calibrate(design, CFG, simulations=10, progress=False)
    assert list(table.claim) == ["C1", "C1", "C2", "C2", "C3", "C3", "C1", "C2", "C3", "C2", "C3", "C4 secondary",
                                 "C4 secondary"]
    # the design in words, each number agreeing with its noun
    assert table.design.iloc[0].startswith("24 samples in 4 groups, 2 replicates x 2 seeds, 1 algorithm x 1 weighted "
                                           "sampler, 3 characteristics; ")
    assert table.condition.iloc[6:11].tolist() == ["groups differ", "association varying by training run",
                                                   "association varying by training run", "crossed attributes",
                                                   "crossed attributes"]
    # a false 'no effect' at the smallest effect: C1's at its threshold (no effect, groups differ), the others planted
    at_margin = table.dropna(subset=["false_equivalence_rate"])
    assert list(zip(at_margin.claim, at_margin.condition)) == [
        ("C1", "no effect"), ("C2", "smallest effect"), ("C3", "smallest effect"), ("C1", "groups differ"),
        ("C4 secondary", "smallest effect")]
    null = table[table.condition != "smallest effect"]
    for r in null.itertuples():
        k = round(r.false_verdict_rate * 10)
        expected = 1.0 if k == 10 else stats.beta.ppf(0.95, k + 1, 10 - k)  # one-sided Clopper-Pearson
        assert r.false_verdict_upper95 == pytest.approx(expected)
    assert table[table.condition == "smallest effect"].power.between(0, 1).all()
    shares = table.filter(like="share_").sum(axis=1)
    assert np.allclose(shares, 1.0)
    again = cal.calibrate(design, CFG, simulations=10, progress=False)
    assert again.equals(table)  # seeded


def test_c4s_exact_bound_is_the_union_bound_of_the_sign_flip_tests_first_holm_step():
    """9 pairs, 12 tests: the only p below 0.05 / 12 is 2 / 512, so at most 12 x 2 / 512 = 4.7%."""
    design = _design(8, 8, 3, seeds=3, algorithms=("ga", "graddiff", "npo"), weighted=("mrd", "mrd_curriculum"))
    assert cal.c4_exact_bound(design, 0.05) == pytest.approx(12 * 2 / 512)
    few = _design(2, 20, 2, seeds=2, algorithms=("ga", "npo"), weighted=("mrd",))
    assert cal.c4_exact_bound(few, 0.05) == 0.0  # 4 pairs: no p below 0.05 / 4 is attainable


# --- C4's unit: run pairs or groups -----------------------------------------------------------------

def test_the_group_unit_errs_at_its_level_only_when_run_pairs_share_nothing():
    """Groups of one run pair share that run's noise: at share 0 the group-level sign-flip test
    rejects at about its level (2000 studies: 25 expected at 0.0125, a binomial band), at share
    0.3 several times as often; the run pair stays at or below the level whatever the share."""
    level = 0.0125
    calm = cal.unit_rejections(8, 10, 0.0, 0.0, level, np.random.default_rng(0))
    shared = cal.unit_rejections(8, 10, 0.3, 0.0, level, np.random.default_rng(1))
    low, high = stats.binom.ppf([0.001, 0.999], 2000, level) / 2000
    assert low <= calm["group"] <= high
    assert shared["group"] > 5 * level
    assert calm["pair"] <= high and shared["pair"] <= high  # 8 pairs: floor 2/256 < level
    planted = cal.unit_rejections(4, 10, 0.0, 0.5, level, np.random.default_rng(2))
    assert planted["pair"] == 0.0 and planted["group"] > 0.3  # 4 pairs: floor 1/8, nothing detectable


def _differences(rng, share, pairs=4, groups=10, means=(0.2,)):
    import pandas as pd
    rows = []
    for c, mean in enumerate(means):  # one comparison per mean: its effect is its own, not shared noise
        for pair in range(pairs):
            run = rng.normal()
            for g in range(groups):
                rows.append({"comparison": f"mrd/a{c}", "algorithm": f"a{c}", "replicate": pair, "seed": 0,
                             "group": f"g{g}",
                             "difference": mean + np.sqrt(share) * run + np.sqrt(1 - share) * rng.normal()})
    return pd.DataFrame(rows)


def test_the_run_share_recovers_a_planted_share():
    rng = np.random.default_rng(3)
    for share in (0.0, 0.5):
        res = cal.run_share(_differences(rng, share, pairs=40))
        assert res["run_share_ci_low"] <= share <= res["run_share_ci_high"]
        assert res["run_share_ci_high"] - res["run_share_ci_low"] < 0.5


def test_the_run_shares_upper_bound_misses_the_truth_at_its_nominal_rate_across_comparisons():
    """Comparisons with different effects (0 and 5 SD) are not shared noise: nested in them, the
    upper bound (97.5% one-sided) falls below a true share of 0.2 in about 2.5% of studies of 8
    comparisons x 4 pairs x 10 groups (centring each comparison without its degrees of freedom
    missed in about 17%). 400 studies: at most 5% (a rate of 2.5% gives more in under 1%)."""
    rng = np.random.default_rng(5)
    misses = [cal.run_share(_differences(rng, 0.2, means=(0, 5) * 4))["run_share_ci_high"] < 0.2 for _ in range(400)]
    assert np.mean(misses) <= 0.05
    calm = cal.run_share(_differences(rng, 0.0, pairs=30, means=(0, 5)))
    assert calm["run_share_ci_low"] <= 0 <= calm["run_share_ci_high"] and calm["run_share_ci_high"] < 0.15


def test_group_differences_pair_each_group_of_a_run_with_its_uniform_run():
    import pandas as pd
    outcomes = pd.DataFrame([{"replicate": r, "algorithm": "ga", "sampler": s, "seed": seed, "group": g,
                              "metric": "truth_ratio_gap", "outcome": (1.0 if s == "mrd" else 0.0) + r + 10 * seed}
                             for r in (0, 1) for s in ("uniform", "mrd") for seed in (0, 1) for g in ("a", "b")])
    diffs = cal.group_differences(outcomes)
    assert len(diffs) == 8 and (diffs.difference == 1.0).all()
    assert set(diffs.comparison) == {"mrd/ga"}


def test_c4_takes_the_group_as_unit_only_where_it_is_valid_and_more_powerful():
    design = cal.Design(groups=np.repeat(np.arange(10), 4).astype(str), replicates=2, seeds=2, algorithms=("ga", "npo"),
                        weighted=("mrd",))
    unit = lambda high: cal.c4_unit(design, {"alpha": 0.05}, {"run_share": high / 2, "run_share_ci_low": 0.0,  # noqa: E731
                                                                 "run_share_ci_high": high})
    independent, shared = unit(0.0), unit(0.2)
    assert independent.set_index("unit").chosen.to_dict() == {"pair": False, "group": True}
    assert shared.set_index("unit").chosen.to_dict() == {"pair": True, "group": False}
    assert (shared.level == 0.05 / 4).all() and shared.set_index("unit").n_units.to_dict() == {"pair": 4, "group": 10}
    default = cal.c4_unit(design, {"alpha": 0.05})
    assert (default.run_share_assumed == cal.DEFAULT_RUN_SHARE).all() and default.run_share_source.str.startswith("default").all()


def test_each_simulated_comparison_has_its_own_studys_sd():
    """C4's secondary rule is simulated on each comparison's own paired SD (a pooled SD would give
    a noisy comparison the power of a calm one); a comparison the study did not measure takes the
    SD over comparisons."""
    sd = {("ga", "mrd"): {"forget_quality": 0.1, "model_utility": 0.02},
          ("ga", "mrd_curriculum"): {"forget_quality": 0.3, "model_utility": 0.05}}
    design = _design(4, 4, 4, seeds=500, algorithms=("ga", "npo"), weighted=("mrd", "mrd_curriculum"),
                     pair_sd={"forget_quality": 0.2, "model_utility": 0.04}, comparison_sd=sd)
    runs = cal.simulate_runs(design, np.random.default_rng(0), {}, {"forget_quality": 1, "model_utility": 1})
    wide = runs.pivot_table(index=["algorithm", "replicate", "seed"], columns="sampler",
                            values=["forget_quality", "model_utility"])
    for (algorithm, sampler), expected in [*sd.items(), (("npo", "mrd"), design.pair_sd)]:
        for metric, value in expected.items():
            diff = (wide[(metric, sampler)] - wide[(metric, "uniform")]).loc[algorithm]
            assert diff.std() == pytest.approx(value, rel=0.06), (algorithm, sampler, metric)


def test_the_report_states_each_rules_rates_beyond_its_scope():
    """The sentence beside a verdict names every beyond-scope condition with its rates; C1's
    a false 'no effect' too (read at its threshold, the no-effect row's is its own)."""
    from mrd_unlearning.report import _calibration

    design = _design(4, 6, 2, n_characteristics=3)
    table = cal.calibrate(design, CFG, simulations=10, power_simulations=5, progress=False)
    lines = _calibration(table)
    assert "with association varying by training run (rho 0 on average, SD 0.15 between runs): false verdicts in" \
        in lines["C2"] and "with crossed attributes" in lines["C3"] and "association varying" in lines["C3"]
    c1 = lines["C1"].split("; with groups differ")
    assert len(c1) == 2 and "a false 'no effect of interesting size' in" in c1[1]
