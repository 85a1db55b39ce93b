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


def test_muse_rouge_is_unstemmed_rouge_l_f1():
    # LCS 3: precision 3/3, recall 3/6 -> F1 2 x 1 x 0.5 / 1.5 = 2/3
    assert metrics.rouge_l_f1(["the cat sat"], ["the cat sat on the mat"])[0] == pytest.approx(2 / 3)
    # no stemmer: "cats" is not "cat" (TOFU's stemmed recall counts it)
    assert metrics.rouge_l_f1(["cats"], ["cat"])[0] == 0.0 and metrics.rouge_l_recall(["cats"], ["cat"])[0] == 1.0


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
    # the references' count, max(1, floor(k n)), at their k = 0.4: 5 tokens -> the lowest 2; 2 tokens -> 1;
    # 4 tokens -> 1 (a ceiling would take 2)
    assert metrics.MIN_K == 0.4 and np.allclose(metrics.min_k_percent(logp, mask), [-3.5, -3.0])
    assert np.allclose(metrics.min_k_percent(np.array([[-1.0, -4.0, -2.0, -3.0]]), np.ones((1, 4))), [-4.0])
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


def test_membership_attacks_on_constructed_scores():
    import zlib

    import pandas as pd

    from mrd_unlearning.evaluation import membership_summary

    assert metrics.zlib_bytes("aaaa") == len(zlib.compress(b"aaaa"))
    # MUSE's orientation (forget = the negative class): a model that memorised the forget set (our AUC 1,
    # MUSE's 0) against a retain model at chance gives (0 - 0.5) / 0.5 x 100 = -100
    assert metrics.privleak(1.0, 0.5) == pytest.approx(-100.0) and metrics.privleak(0.5, 0.5) == 0.0
    assert metrics.privleak(0.75, 0.5) == pytest.approx(-50.0) and metrics.privleak(0.25, 0.5) == pytest.approx(50.0)

    def frame(split, loglik, min_k):
        return pd.DataFrame({"split": split, "sample_id": range(len(loglik)), "loglik": loglik, "min_k": min_k,
                             "zlib": loglik, "min_k_pp": min_k, "neg_grad_norm": loglik})

    # members above every non-member on LOSS; on Min-K% 3 of the 4 member/non-member pairs ordered
    samples = pd.concat([frame("forget", [-0.1, -0.2], [-1.0, -3.0]), frame("holdout", [-1.0, -2.0], [-2.0, -4.0])])
    out = membership_summary(samples, None)
    assert out["mia_loss"] == 1.0 and out["mia_auc"] == 0.75 and out["mia_zlib"] == 1.0
    assert np.isnan(out["mia_reference"]) and np.isnan(out["privleak"])
    # the retain model finds the members as likely as the non-members: the reference attack subtracts it
    reference = pd.concat([frame("forget", [-0.1, -0.2], [-1.0, -1.0]), frame("holdout", [-2.0, -1.0], [-1.0, -1.0])])
    out = membership_summary(samples, reference)
    # L - L_retain: members 0, 0; non-members 1, -1 -> pairs (0 > -1) twice, (0 < 1) twice: AUC 0.5
    assert out["mia_reference"] == 0.5
    # the retain model's Min-K% AUC is 0.5 (ties); MUSE's AUCs are 1 - 0.75 and 1 - 0.5
    assert out["privleak"] == pytest.approx((0.25 - 0.5) / 0.5 * 100)


def test_min_k_plus_plus_token_scores_by_hand():
    """z_t = (log p(y_t) - mu_t) / sigma_t over a 3-token vocabulary."""
    import torch

    from mrd_unlearning.models import IGNORE, token_log_probs

    logits = torch.tensor([[[0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": logits})()

    batch = {"input_ids": torch.zeros(1, 3, dtype=torch.long), "attention_mask": torch.ones(1, 3, dtype=torch.long),
             "labels": torch.tensor([[IGNORE, 1, 0]])}
    logp, mask, z = token_log_probs(Fixed(), batch, with_zscores=True)
    expected = []
    for row, target in ((np.array([0.0, 1.0, 2.0]), 1), (np.array([2.0, 0.0, 0.0]), 0)):
        lp = row - np.log(np.exp(row).sum())
        mu = (np.exp(lp) * lp).sum()
        sigma = np.sqrt((np.exp(lp) * lp ** 2).sum() - mu ** 2)
        expected.append((lp[target] - mu) / sigma)
    assert mask.tolist() == [[True, True]] and np.allclose(z[0].numpy(), expected)
