import math

import numpy as np
import pytest

from mrd_unlearning import metrics


def test_truth_ratio_hand_computed():
    # P_para = 0.5; wrong answers 0.25 and 0.0625 -> geometric mean 0.125 -> R = 0.25
    r = metrics.truth_ratio(np.log([0.5]), np.log([[0.25, 0.0625]]))
    assert r[0] == pytest.approx(0.25)
    assert metrics.forget_truth_ratio(np.array([0.25, 2.0])) == pytest.approx((0.25 + 0.5) / 2)
    assert metrics.retain_truth_ratio(np.array([0.25, 2.0])) == pytest.approx((0.75 + 0.0) / 2)


def test_rouge_l_recall_hand_computed():
    # LCS("the cat sat", "the cat sat on the mat") = 3 of the reference's 6 words
    assert metrics.rouge_l_recall(["the cat sat"], ["the cat sat on the mat"])[0] == pytest.approx(0.5)
    assert metrics.rouge_l_recall(["a mat the cat"], ["the cat"])[0] == pytest.approx(1.0)
    assert metrics.rouge_l_recall(["dog"], ["the cat"])[0] == 0.0


def test_forget_quality_is_ks_pvalue_and_statistic():
    same = np.array([0.1, 0.5, 0.9, 1.3])
    assert metrics.forget_quality(same, same) == pytest.approx((1.0, 0.0))
    # disjoint samples of 4 and 4: exact two-sided p = 2 / C(8, 4), the largest CDF gap 1
    assert metrics.forget_quality(same, same + 10) == pytest.approx((2 / math.comb(8, 4), 1.0))
    # one of four shifted past the rest: CDFs differ by at most 1/4
    assert metrics.forget_quality(same, np.array([0.1, 0.5, 0.9, 9.0]))[1] == pytest.approx(0.25)


def test_model_utility_harmonic_mean():
    assert metrics.model_utility([0.5, 1.0, 1.0]) == pytest.approx(3 / (2 + 1 + 1))
    assert metrics.model_utility([0.5, 0.0]) == 0.0


def test_min_k_and_membership_auc():
    logp = np.array([[-1.0, -5.0, -2.0, -0.5, 0.0], [-3.0, -3.0, 0.0, 0.0, 0.0]])
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    assert np.allclose(metrics.min_k_percent(logp, mask, k=0.4), [-3.5, -3.0])
    # members 3, 2 vs non-members 1, 2.5: pairs won 1 + 1 + 1 + 0 -> 3 / 4
    assert metrics.membership_auc(np.array([3.0, 2.0]), np.array([1.0, 2.5])) == pytest.approx(0.75)


def test_level_crossing_interpolates_and_censors_at_the_budget():
    steps = np.array([0, 5, 10, 15])
    # between points: -0.1 at 0, -0.8 at 5 (level -0.7): 0 + (-0.1 + 0.7) / (-0.1 + 0.8) * 5 = 30/7
    assert metrics.level_crossing(steps, np.array([-0.1, -0.8, -2.0, -3.0]), -0.7, 15) == (pytest.approx(30 / 7), False)
    # exactly at a logged step
    assert metrics.level_crossing(steps, np.array([-0.1, -0.4, -0.7, -1.0]), -0.7, 15) == (pytest.approx(10.0), False)
    # never: censored at the budget
    assert metrics.level_crossing(steps, np.array([-0.1, -0.2, -0.3, -0.4]), -1.0, 15) == (15.0, True)
    # already at the level at step 0
    assert metrics.level_crossing(steps, np.array([-2.0, -2.1, -2.2, -2.3]), -1.0, 15) == (0.0, False)
    # reached only after the budget (the run went on to equal forgetting): censored at the budget
    assert metrics.level_crossing(steps, np.array([-0.1, -0.2, -0.3, -1.5]), -1.0, 10) == (10.0, True)


def test_forgetting_progress_and_area_by_hand():
    steps, values = np.array([0, 10, 20]), np.array([-1.0, -2.0, -4.0])  # level -3: progress 0, 0.5, 1.5
    assert np.allclose(metrics.forgetting_progress(values, -3.0), [0.0, 0.5, 1.5])
    assert metrics.progress_at(steps, values, -3.0, 20) == pytest.approx(1.5)  # overshoot shows
    assert metrics.progress_at(steps, values, -3.0, 15) == pytest.approx(1.0)
    # clipped at 1: trapezoids 0..10 -> 2.5, 10..15 -> (0.5 + 1) / 2 * 5 = 3.75, 15..20 -> 5: 11.25 / 20
    assert metrics.forgetting_auc(steps, values, -3.0, 20) == pytest.approx(11.25 / 20)
    # over a shorter budget, the curve is cut there: 0..10 -> 2.5 over 10
    assert metrics.forgetting_auc(steps, values, -3.0, 10) == pytest.approx(0.25)


def test_normalized_probability_hand_computed():
    """Options with probabilities 0.5 (true), 0.25 and 0.25 -> 0.5; the row sums stay exact for
    very negative log-likelihoods (computed relative to the row's maximum)."""
    true = np.log([0.5, 1e-300])
    wrong = np.log([[0.25, 0.25], [1e-300, 3e-300]])
    got = metrics.normalized_probability(true, wrong)
    assert np.allclose(got, [0.5, 0.2])
