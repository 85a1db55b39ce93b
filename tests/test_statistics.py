"""Pooled inference across replicates: the crossed bootstrap recovers a known rho and covers it at
about the nominal rate, Holm matches a hand computation, the nested paired CI is the t-interval
over replicate means, the minimum detectable effect has the power it claims, and the censored
comparison of steps to forget finds a known difference."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mrd_unlearning import metrics
from mrd_unlearning.statistics import (holm, logrank_p, mean_ci, minimum_detectable_effect, nested_mean_diff,
                                       pooled_bootstrap)
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
    assert res["p_value"] == pytest.approx(2 / 501)  # no resample at or below 0
    assert pooled_bootstrap(_spearman, [x, y], n_resamples=500, seed=3) == res
    assert pooled_bootstrap(_spearman, [x, y], n_resamples=500, seed=4)["ci_low"] != res["ci_low"]


def test_holm_matches_a_hand_computation():
    # sorted p: 0.01, 0.02, 0.03, 0.04 (m = 4) -> 0.04, 0.06, 0.06 (max with the previous), 0.06
    p = [0.03, 0.01, 0.04, 0.02, np.nan]
    assert np.allclose(holm(p)[:4], [0.06, 0.04, 0.06, 0.06])
    assert np.isnan(holm(p)[4])
    assert np.allclose(holm([0.01, 0.9]), [0.02, 0.9]) and np.allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped, monotone


def test_nested_mean_diff_is_the_t_interval_over_replicate_means():
    frame = pd.DataFrame({"replicate": [0, 0, 0, 1, 1, 1, 2, 2, 2],
                          "seed": [0, 1, 2] * 3,
                          "d": [1.0, 2.0, 3.0, 0.0, 0.0, 3.0, 5.0, 4.0, 6.0]})
    res = nested_mean_diff(frame, "d")
    means = np.array([2.0, 1.0, 5.0])
    half = stats.t.ppf(0.975, 2) * means.std(ddof=1) / math.sqrt(3)
    assert res["mean"] == pytest.approx(8 / 3)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((8 / 3 - half, 8 / 3 + half))
    assert res["p_value"] == pytest.approx(stats.ttest_1samp(means, 0).pvalue)
    assert res["unit"] == "replicate" and res["n_units"] == 3 and res["n_pairs"] == 9
    one = nested_mean_diff(frame[frame.replicate == 0], "d")  # one replicate: over its seeds
    assert one["unit"] == "seed" and one["n_units"] == 3 and one["mean"] == pytest.approx(2.0)


def test_identical_unit_means_are_not_a_certain_difference():
    """Two seeds that both move a discrete metric by the same step: the t-test would say p = 0;
    the exact signed-rank test says what two same-signed values can say (p = 0.5), and a metric
    that does not move at all (both samplers at a floor) gives p = 1."""
    frame = pd.DataFrame({"replicate": [0, 0], "seed": [0, 1], "d": [-0.0255, -0.0255]})
    assert nested_mean_diff(frame, "d")["p_value"] == pytest.approx(0.5)
    three = pd.DataFrame({"replicate": [0, 1, 2], "seed": [0, 0, 0], "d": [0.1, 0.1 + 1e-17, 0.1]})
    assert nested_mean_diff(three, "d")["p_value"] == pytest.approx(0.25)  # float noise is no spread
    assert nested_mean_diff(frame.assign(d=0.0), "d")["p_value"] == 1.0


def test_minimum_detectable_effect_has_the_power_it_claims():
    """A true effect of the MDE is detected by the same t-test in about 80% of simulated designs."""
    rng = np.random.default_rng(5)
    for n in (3, 9):
        mde = minimum_detectable_effect(1.0, n, alpha=0.05, power=0.8)
        draws = rng.normal(mde, 1.0, size=(20000, n))
        detected = stats.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05
        assert detected.mean() == pytest.approx(0.8, abs=0.015)
    assert minimum_detectable_effect(2.0, 9) == pytest.approx(2 * minimum_detectable_effect(1.0, 9))
    assert np.isnan(minimum_detectable_effect(1.0, 1))


def _steps(curves, level, budget):
    return zip(*(metrics.level_crossing(steps, values, level, budget) for steps, values in curves))


def test_censored_comparison_of_steps_to_forget_on_synthetic_curves():
    """Sampler A's curves reach the level after 10-19 steps; B's never within the budget of 50:
    the log-rank test separates them, and the restricted mean difference is exact."""
    steps = np.arange(0, 51, 5)
    fast = [(steps, -0.1 * steps * (1 + 0.1 * k)) for k in range(8)]  # level -2 at step 20 / (1 + 0.1 k)
    slow = [(steps, -0.01 * steps * (1 + 0.1 * k)) for k in range(8)]  # at most -0.5 + ... never -2 by step 50
    ta, ca = _steps(fast, -2.0, 50)
    tb, cb = _steps(slow, -2.0, 50)
    assert not any(ca) and all(cb) and all(t == 50 for t in tb)
    assert ta[0] == pytest.approx(20.0) and ta[1] == pytest.approx(20 / 1.1)  # interpolated between points
    assert logrank_p(ta, ca, tb, cb) < 0.001
    frame = pd.DataFrame({"replicate": np.repeat([0, 1], 4), "seed": np.tile(range(4), 2),
                          "d": np.array(ta) - np.array(tb)})
    assert nested_mean_diff(frame, "d")["mean"] == pytest.approx(np.mean(ta) - 50)
    assert logrank_p(ta, ca, ta, ca) == pytest.approx(1.0)
    assert logrank_p(tb, cb, tb, cb) == 1.0  # nobody reached the level: nothing to compare


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
    for trial in range(150):
        x, y, groups = simulated_groups(rng, r, icc, G=12, m=8)
        if sizes == "unequal":  # drop a seeded share of the samples: groups of 3 to 8
            keep = rng.random(len(x)) < 0.7
            keep[::8] = True
            x, y, groups = x[keep], y[keep], groups[keep]
        for method, g in (("cluster", groups), ("sample", None)):
            res = pooled_bootstrap(_spearman, [x[None], y[None]], n_resamples=300, seed=trial, groups=g)
            covered[method].append(res["ci_low"] <= true_spearman <= res["ci_high"])
    assert np.mean(covered["cluster"]) >= 0.85  # nominal 0.95; percentile intervals over 12 groups run a bit short
    assert np.mean(covered["sample"]) <= 0.75
    assert np.mean(covered["cluster"]) - np.mean(covered["sample"]) >= 0.15


def test_cluster_indices_keep_groups_whole_and_reduce_to_the_sample_bootstrap():
    from mrd_unlearning.statistics import cluster_indices

    groups = np.repeat(["a", "b", "c"], 4)
    draws = cluster_indices(groups, 200, np.random.default_rng(0))
    assert all(len(d) == 12 for d in draws)
    for d in draws[:20]:  # each block of 4 comes from one group
        assert all(len(set(groups[d[i:i + 4]])) == 1 for i in range(0, 12, 4))
    singletons = cluster_indices(np.arange(50), 400, np.random.default_rng(0))
    counts = np.bincount(np.concatenate(singletons), minlength=50)
    assert stats.chisquare(counts).pvalue > 1e-3  # every sample equally likely, as the ordinary bootstrap
