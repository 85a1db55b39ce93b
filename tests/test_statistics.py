"""Pooled inference across replicates: the crossed bootstrap recovers a known rho and covers it at
about the nominal rate, its interval and p-value cannot disagree, Holm matches a hand computation,
the sign-flip test matches scipy's permutation test and has no jump between methods, the minimum
detectable effect has the power it claims at the level it is stated for, and the resampling
scheme fits the number of groups."""
import math

import numpy as np
import pytest
from scipy import stats

from mrd_unlearning.statistics import (bootstrap_p, holm, mean_ci, minimum_detectable_effect, percentile_interval,
                                       pooled_bootstrap, resample_indices, resampling_scheme, sign_flip_test)
from mrd_unlearning.validation import _spearman


def simulated_replicates(rng, rho: float, R: int, n: int, shared: float = 0.7):
    """Samples shared by R replicates: x_i fixed; y_ir correlates with x_i at `rho` in every
    replicate, part of its noise shared by the sample (`shared`), part new in each training run."""
    x = rng.normal(size=n)
    sample_noise = rng.normal(size=n)
    run_noise = rng.normal(size=(R, n))
    noise = math.sqrt(shared) * sample_noise + math.sqrt(1 - shared) * run_noise
    y = rho * x + math.sqrt(1 - rho ** 2) * noise
    return np.broadcast_to(x, (R, n)).copy(), y


def test_pooled_bootstrap_recovers_a_known_rho_and_covers_it_at_the_nominal_rate():
    rho = 0.5
    true_spearman = 6 / math.pi * math.asin(rho / 2)  # population Spearman of a bivariate normal
    rng = np.random.default_rng(0)
    estimates, covered = [], []
    for trial in range(200):
        x, y = simulated_replicates(rng, rho, R=3, n=64)
        res = pooled_bootstrap(_spearman, [x, y], n_resamples=400, seed=trial)
        estimates.append(res["estimate"])
        covered.append(res["ci_low"] <= true_spearman <= res["ci_high"])
        assert res["ci_low"] <= res["estimate"] <= res["ci_high"]
    assert np.mean(estimates) == pytest.approx(true_spearman, abs=0.02)
    assert 0.90 <= np.mean(covered) <= 0.995  # nominal 0.95; the crossed bootstrap leans conservative


def test_pooled_bootstrap_with_one_replicate_is_the_sample_bootstrap():
    rng = np.random.default_rng(1)
    x, y = simulated_replicates(rng, 0.0, R=1, n=80)
    res = pooled_bootstrap(_spearman, [x, y], n_resamples=500)
    assert res["estimate"] == pytest.approx(stats.spearmanr(x[0], y[0])[0])
    assert res["ci_low"] < 0 < res["ci_high"] and res["p_value"] > 0.05 and np.isnan(res["between_sd"])


def test_pooled_bootstrap_p_value_is_small_for_a_strong_correlation_and_seeded():
    rng = np.random.default_rng(2)
    x, y = simulated_replicates(rng, 0.8, R=3, n=64)
    res = pooled_bootstrap(_spearman, [x, y], n_resamples=500, seed=3)
    assert res["p_value"] == pytest.approx(1 / 500)  # no resample at or below 0: the floor 1 / B
    assert pooled_bootstrap(_spearman, [x, y], n_resamples=500, seed=3) == res
    assert pooled_bootstrap(_spearman, [x, y], n_resamples=500, seed=4)["ci_low"] != res["ci_low"]


def test_the_interval_and_the_p_value_cannot_disagree():
    """Finding: 50 of 2000 resamples at or below 0 gave a CI excluding 0 with p 0.051. Now the CI
    excludes 0 exactly when p < alpha, on any replicates, ties at 0 included."""
    boot = np.concatenate([np.full(50, -0.01), np.linspace(0.01, 1, 1950)])
    low, high = percentile_interval(boot, 0.05)
    assert low < 0 and bootstrap_p(boot) == pytest.approx(0.05)  # 50 = 2.5% of 2000: at the edge, on both
    rng = np.random.default_rng(0)
    for _ in range(2000):
        B = int(rng.integers(100, 3000))
        boot = rng.normal(rng.normal(0, 2), 1, size=B).round(int(rng.integers(0, 3)))  # ties, some exactly at 0
        low, high = percentile_interval(boot, 0.05)
        assert (low > 0 or high < 0) == (bootstrap_p(boot) < 0.05)


def test_monte_carlo_error_cannot_move_a_decision():
    """Finding: a p-value near alpha flipped with the bootstrap's seed. A p within 3 Monte Carlo
    standard errors of the level is recomputed on more resamples (up to 16 times), and the error is
    reported; data whose p sits near the level then decide the same way on every seed."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=40)
    y = 0.35 * x + rng.normal(size=40)  # these data: p about 0.03 at n = 40, near 0.05 for 400 resamples
    res = pooled_bootstrap(_spearman, [x[None], y[None]], n_resamples=400, seed=0)
    assert res["n_resamples"] > 400  # refined: the path under test runs
    assert res["p_mc_se"] == pytest.approx(np.sqrt(res["p_value"] * (1 - res["p_value"]) / res["n_resamples"]))
    far = pooled_bootstrap(_spearman, [x[None], (x + 0.1 * rng.normal(size=40))[None]], n_resamples=400)
    assert far["n_resamples"] == 400 and far["p_mc_se"] == pytest.approx(np.sqrt(1 / 400) / 20)
    decisions = [pooled_bootstrap(_spearman, [x[None], y[None]], n_resamples=400, seed=s) for s in range(8)]
    assert sum(r["n_resamples"] > 400 for r in decisions) >= 4  # most seeds needed more resamples
    assert all(abs(r["p_value"] - 0.05) >= 3 * r["p_mc_se"] for r in decisions)  # each ends clear of the level
    assert {r["p_value"] < 0.05 for r in decisions} == {True}  # and all decide the same way


def test_holm_matches_a_hand_computation():
    # sorted p: 0.01, 0.02, 0.03, 0.04 (m = 4) -> 0.04, 0.06, 0.06 (max with the previous), 0.06
    p = [0.03, 0.01, 0.04, 0.02, np.nan]
    assert np.allclose(holm(p)[:4], [0.06, 0.04, 0.06, 0.06])
    assert np.isnan(holm(p)[4])
    assert np.allclose(holm([0.01, 0.9]), [0.02, 0.9]) and np.allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped, monotone


def test_sign_flip_test_matches_scipys_permutation_test_and_inverts_into_its_interval():
    rng = np.random.default_rng(4)
    for n in (3, 6, 9):
        d = rng.normal(0.3, 1, size=n)
        res = sign_flip_test(d)
        exact = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf)
        assert res["p_value"] == pytest.approx(exact.pvalue) and res["p_floor"] == pytest.approx(2 / 2 ** n)
    d = rng.normal(0.5, 1, size=9)
    res = sign_flip_test(d)
    assert res["ci_low"] < d.mean() < res["ci_high"]
    for bound, inward in ((res["ci_low"], 1e-6), (res["ci_high"], -1e-6)):  # the acceptance region's edges
        just_in = stats.permutation_test((d - (bound + inward),), np.mean, permutation_type="samples",
                                         n_resamples=np.inf)
        just_out = stats.permutation_test((d - (bound - inward),), np.mean, permutation_type="samples",
                                          n_resamples=np.inf)
        assert just_in.pvalue >= 0.05 > just_out.pvalue
    assert (res["ci_low"] > 0) == (res["p_value"] < 0.05)


def test_identical_unit_means_give_no_jump_between_methods():
    """Finding: [0.05, 0.05, 0.05] fell back to Wilcoxon (p 0.25) while [0.05, 0.05, 0.050001] got the
    t-test's p 4e-11. The sign-flip test gives both 0.25, and with 3 units no p can reach 0.05:
    the interval is unbounded and the floor says why."""
    a, b = sign_flip_test([0.05, 0.05, 0.05]), sign_flip_test([0.05, 0.05, 0.050001])
    assert a["p_value"] == b["p_value"] == pytest.approx(0.25) and a["p_floor"] == pytest.approx(0.25)
    assert np.isinf(a["ci_low"]) and np.isinf(b["ci_high"])
    assert sign_flip_test([0.0, 0.0])["p_value"] == 1.0  # both samplers at a floor: no difference at all
    assert sign_flip_test(np.full(9, 0.05))["p_value"] == pytest.approx(2 / 512)  # 9 same-signed pairs


def test_the_sign_flip_interval_covers_at_the_nominal_rate():
    rng = np.random.default_rng(8)
    covered = [(lambda r: r["ci_low"] <= 0.3 <= r["ci_high"])(sign_flip_test(rng.normal(0.3, 1, size=9)))
               for _ in range(400)]
    assert 0.92 <= np.mean(covered) <= 0.98


def test_minimum_detectable_effect_has_the_power_it_claims():
    """A true effect of the MDE is detected by the same sign-flip test in about 80% of simulated
    designs, at the level it is stated for (Holm's first level alpha / m is far stricter than
    alpha); where the test's floor 2 / 2^n lies above the level, no effect is detectable.
    Finding: the t-test's MDE overstated the sign-flip test's power (0.65 at its 'MDE')."""
    import itertools

    rng = np.random.default_rng(5)
    for n, level in ((6, 0.05), (9, 0.05), (9, 0.05 / 12)):
        mde = minimum_detectable_effect(1.0, n, alpha=level, power=0.8)
        signs = np.array(list(itertools.product([1.0, -1.0], repeat=n)))
        draws = rng.normal(mde, 1.0, size=(5000, n))
        p = (np.abs(draws @ signs.T) >= np.abs(draws.sum(axis=1))[:, None] - 1e-9).mean(axis=1)
        assert (p < level).mean() == pytest.approx(0.8, abs=0.02)
    assert minimum_detectable_effect(1.0, 9, alpha=0.05 / 12) > 1.4 * minimum_detectable_effect(1.0, 9)
    assert minimum_detectable_effect(2.0, 9) == pytest.approx(2 * minimum_detectable_effect(1.0, 9))
    assert np.isinf(minimum_detectable_effect(1.0, 3)) and np.isinf(minimum_detectable_effect(1.0, 6, alpha=0.05 / 12))
    assert np.isnan(minimum_detectable_effect(float("nan"), 9))


def test_the_sign_flip_interval_agrees_with_the_test_at_zero_when_differences_tie_at_zero():
    """Finding: d = [1, 0, 0, 0, 0, 2, 3, 2, 2] gave p 0.0625 but an interval [1e-10, 2.0]."""
    res = sign_flip_test([1, 0, 0, 0, 0, 2, 3, 2, 2])
    assert res["p_value"] == pytest.approx(0.0625) and res["ci_low"] <= 0 <= res["ci_high"]
    rng = np.random.default_rng(3)
    for _ in range(200):
        d = rng.integers(-1, 4, size=9) * 5.0  # step counts: multiples of 5, often tied at 0
        res = sign_flip_test(d)
        assert (res["ci_low"] > 0 or res["ci_high"] < 0) == (res["p_value"] < 0.05)


def test_a_resample_without_the_rare_sample_counts_as_no_effect():
    """Finding: a rare binary characteristic (one 1 among 40) made most resamples undefined;
    dropping them left the rest on one side and p < 0.05 / 7 in 9 of 50 null data sets."""
    from mrd_unlearning.validation import rank_association

    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 20)
    x = np.zeros(40)
    x[3] = 1.0
    small = [rank_association(x[None], rng.normal(size=(1, 40)), groups=groups, n_resamples=400, seed=s)["p_value"]
             < 0.05 / 7 for s in range(30)]
    assert sum(small) <= 1


def test_mean_ci():
    mean, low, high = mean_ci(np.array([1.0, 2.0, 3.0, np.nan]))
    assert mean == 2.0 and high - mean == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert np.isnan(mean_ci([1.0])[1])


def simulated_groups(rng, r: float, icc: float, G: int, m: int):
    """G groups of m samples: x and y share a group effect (share `icc` of each one's variance)
    whose x-y correlation is `r`; within a group the noise is independent. corr(x, y) = icc r."""
    u = rng.normal(size=G)
    v = r * u + math.sqrt(1 - r ** 2) * rng.normal(size=G)
    x = math.sqrt(icc) * np.repeat(u, m) + math.sqrt(1 - icc) * rng.normal(size=G * m)
    y = math.sqrt(icc) * np.repeat(v, m) + math.sqrt(1 - icc) * rng.normal(size=G * m)
    return x, y, np.repeat(np.arange(G), m)


@pytest.mark.parametrize("sizes", ["equal", "unequal"])
def test_cluster_bootstrap_covers_rho_on_grouped_samples_where_the_sample_bootstrap_does_not(sizes):
    """Samples in groups (one author's QA): the cluster bootstrap's CI covers the population rho
    at about the nominal rate; the sample bootstrap's, which takes them as independent, far less."""
    r, icc = 0.6, 0.8
    true_spearman = 6 / math.pi * math.asin(icc * r / 2)
    rng = np.random.default_rng(5)
    covered = {"cluster": [], "sample": []}
    for trial in range(100 if sizes == "equal" else 40):  # unequal groups resample in a Python loop: fewer
        x, y, groups = simulated_groups(rng, r, icc, G=12, m=8)
        if sizes == "unequal":  # drop a seeded share of the samples: groups of 3 to 8
            keep = rng.random(len(x)) < 0.7
            keep[::8] = True
            x, y, groups = x[keep], y[keep], groups[keep]
        for method, g in (("cluster", groups), ("sample", None)):
            res = pooled_bootstrap(_spearman, [x[None], y[None]], n_resamples=300, seed=trial, groups=g, min_groups=10)
            covered[method].append(res["ci_low"] <= true_spearman <= res["ci_high"])
    assert np.mean(covered["cluster"]) >= 0.85  # nominal 0.95; percentile intervals over 12 groups run a bit short
    assert np.mean(covered["sample"]) <= 0.8
    assert np.mean(covered["cluster"]) - np.mean(covered["sample"]) >= 0.15


def test_resampling_fits_the_number_of_groups():
    """Finding: with 2 authors half of all cluster resamples hold one author, and at moderate group
    counts the two-stage bootstrap was very conservative. Whole groups from min_groups (10) on; with
    fewer, the groups are held fixed and their samples resampled within them; no groups: samples."""
    assert resampling_scheme(None) == "samples" and resampling_scheme(np.arange(20)) == "samples"
    assert resampling_scheme(np.repeat(np.arange(2), 20)) == "within"
    assert resampling_scheme(np.repeat(np.arange(8), 4)) == "within"
    assert resampling_scheme(np.repeat(np.arange(12), 4)) == "groups"
    assert resampling_scheme(np.repeat(np.arange(12), 4), min_groups=50) == "within"
    assert resampling_scheme(np.repeat(np.arange(50), 2)) == "groups"
    rng = np.random.default_rng(0)
    whole = resample_indices(np.repeat(np.arange(12), 3), 200, rng, "groups")
    assert whole.shape == (200, 36)
    blocks = whole.reshape(200, 12, 3) // 3
    assert (blocks == blocks[:, :, :1]).all()  # each block of 3 is one whole group
    within = resample_indices(np.repeat(["a", "b", "c"], 4), 300, rng, "within")
    assert within.shape == (300, 12) and (within // 4 == np.arange(12) // 4).all()  # each position keeps its group
    singletons = resample_indices(np.arange(50), 400, rng, "samples")
    assert stats.chisquare(np.bincount(singletons.ravel(), minlength=50)).pvalue > 1e-3


def test_the_within_group_inference_is_calibrated_at_moderate_group_counts():
    """No correlation, group effects in both variables (ICC 0.5), 12 groups: the two-stage cluster
    bootstrap rejected in 0-3% at a nominal 5%, resampling whole groups in about 9-12%. Below
    `min_groups` (here 50) the rho is taken within groups and samples resampled within them: near 5%
    (from 10 groups on, correlations use the sign-flip test over groups: test_validation)."""
    rng = np.random.default_rng(9)
    rejected = []
    for trial in range(200):
        x, y, groups = simulated_groups(rng, 0.0, 0.5, G=12, m=6)
        res = pooled_bootstrap(_spearman, [x[None], y[None]], n_resamples=400, seed=trial, groups=groups, within=True,
                               min_groups=50)
        assert res["scheme"] == "within"
        rejected.append(res["p_value"] < 0.05)
    assert 0.01 <= np.mean(rejected) <= 0.09


def test_the_batched_sign_flip_p_is_the_tests_p():
    from mrd_unlearning.statistics import sign_flip_p
    rng = np.random.default_rng(4)
    for n in (3, 7, 10):
        d = rng.normal(0.3, 1.0, size=(6, n))
        assert np.allclose(sign_flip_p(d), [sign_flip_test(row)["p_value"] for row in d])


def test_t_test_power_is_statsmodels_where_it_is_defined_and_monotone_where_it_is_not():
    """statsmodels' (scipy's) noncentral t gives NaN at high power and small alpha (0.5 SD, 128
    units, alpha 0.0025); the power must stay defined and rise with the units there."""
    from statsmodels.stats.power import TTestPower

    from mrd_unlearning.statistics import t_test_power
    for n in (5, 20, 64, 100):
        assert t_test_power(0.5, n, 0.0025) == pytest.approx(TTestPower().power(0.5, nobs=n, alpha=0.0025))
    powers = [t_test_power(0.5, n, 0.0025) for n in range(60, 520, 20)]
    assert np.isfinite(powers).all() and np.all(np.diff(powers) >= 0) and powers[-1] > 0.999


def test_t_test_power_keeps_the_near_tail_where_only_the_far_one_is_nan():
    """At alpha 5e-4 the far tail is NaN while the near one is exact: the power is that tail
    (0.760 at 1.55 SD and 13 units, not the normal approximation's 0.808), and rises with n."""
    from mrd_unlearning.statistics import t_test_power
    critical = stats.t.isf(5e-4 / 2, 12)
    assert t_test_power(1.55, 13, 5e-4) == pytest.approx(stats.nct.sf(critical, 12, 1.55 * np.sqrt(13)), abs=1e-6)
    assert t_test_power(1.55, 13, 5e-4) == pytest.approx(0.760, abs=0.005)
    powers = [t_test_power(2.69, n, 1e-4) for n in range(4, 40)]
    assert np.isfinite(powers).all() and np.all(np.diff(powers) >= 0)


def test_a_study_with_a_missing_difference_gets_no_sign_flip_p():
    from mrd_unlearning.statistics import sign_flip_p
    p = sign_flip_p(np.array([[1.0, 2.0, 3.0], [1.0, np.nan, 3.0]]))
    assert p[0] == pytest.approx(0.25) and np.isnan(p[1])


def test_a_cluster_bootstrap_over_few_groups_is_widened_by_the_small_sample_correction():
    """Over G groups the percentile interval of whole-group resamples runs short (on TOFU's 10
    authors C1 said 'no effect' at its threshold more often than alpha). The resamples are spread
    about the estimate by sqrt(G / (G - 1)) t(G - 1) / z before the interval and the p-value are
    read, so both stay one procedure; with many groups the correction vanishes."""
    from mrd_unlearning.statistics import _resample, few_groups_scale

    assert few_groups_scale(10, 0.05) == pytest.approx(math.sqrt(10 / 9) * stats.t.ppf(0.975, 9) / 1.959964, rel=1e-6)
    assert few_groups_scale(10, 0.05) == pytest.approx(1.2165, abs=1e-3) and few_groups_scale(2000, 0.05) < 1.002
    rng = np.random.default_rng(4)
    for trial in range(6):
        x, y, groups = simulated_groups(rng, 0.2, 0.5, G=10, m=4)
        res = pooled_bootstrap(_spearman, [x[None], y[None]], n_resamples=400, seed=trial, groups=groups, min_groups=10)
        raw = _resample(_spearman, [x[None], y[None]], groups, "groups", res["n_resamples"],
                        np.random.default_rng(trial), True, {})
        low, high = np.quantile(raw, [0.025, 0.975], method="inverted_cdf")
        k = few_groups_scale(10, 0.05)
        assert res["ci_low"] == pytest.approx(res["estimate"] + k * (low - res["estimate"]))
        assert (res["p_value"] < 0.05) == (res["ci_low"] > 0 or res["ci_high"] < 0)


def test_the_few_groups_spread_keeps_a_correlation_within_minus_one_to_one():
    """Spread about an estimate near 1, whole-group resamples of a correlation pass 1; with the
    statistic's bounds the interval stops at 1 and the p-value (no resample crosses 0) is the same."""
    from mrd_unlearning.statistics import CORRELATION

    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = x + 0.05 * rng.normal(size=40)
    x[:4] = x[4:8][::-1]  # one group nearly reversed: resamples without it reach a rho near 1
    groups = np.repeat(np.arange(10), 4)
    kw = dict(n_resamples=400, seed=1, groups=groups, min_groups=10)
    free = pooled_bootstrap(_spearman, [x[None], y[None]], **kw)
    bounded = pooled_bootstrap(_spearman, [x[None], y[None]], bounds=CORRELATION, **kw)
    assert free["ci_high"] > 1  # what the clip is for
    assert bounded["ci_high"] == 1.0 and bounded["ci_low"] == free["ci_low"]
    assert bounded["p_value"] == free["p_value"] and bounded["estimate"] == free["estimate"]
