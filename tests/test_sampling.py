import numpy as np
import pytest
import torch
from scipy import stats

from mrd_unlearning.sampling import draw, mrd_weights, probabilities


def test_empirical_frequencies_match_weights():
    drop = np.array([0.5, 0.1, 0.2, 0.05, 0.15])
    probs = probabilities("mrd", 5, drop=drop, tau=1.0)
    gen = torch.Generator().manual_seed(0)
    counts = np.bincount(draw(probs, 50_000, gen), minlength=5)
    assert stats.chisquare(counts, probs * counts.sum()).pvalue > 1e-3
    assert np.allclose(probs, drop / drop.sum())


def test_uniform_and_temperature():
    assert np.allclose(probabilities("uniform", 4), 0.25)
    drop = np.array([1.0, 4.0])
    assert np.allclose(mrd_weights(drop, tau=2.0), [1 / 3, 2 / 3])  # sqrt weights
    assert mrd_weights(drop, tau=0.1)[1] > 0.99  # low temperature: nearly all mass on the easiest


def test_easy_samples_drawn_more_and_nonpositive_drops_stay_reachable():
    w = mrd_weights(np.array([0.4, 0.2, -0.1, 0.0]), tau=1.0)
    assert w[0] > w[1] >= w[2] == w[3] > 0
    assert np.isclose(w.sum(), 1.0)


def test_unknown_sampler():
    with pytest.raises(ValueError, match="allowed"):
        probabilities("nope", 3)


@pytest.mark.parametrize("sampler", ["mrd_inverse", "mrd_curriculum"])
def test_every_sampler_draws_its_weights(sampler):
    drop = np.array([0.5, 0.1, 0.2, 0.05, 0.15])
    probs = probabilities(sampler, 5, drop=drop, tau=1.0, step=3, total_steps=10)
    counts = np.bincount(draw(probs, 50_000, torch.Generator().manual_seed(1)), minlength=5)
    assert stats.chisquare(counts, probs * counts.sum()).pvalue > 1e-3


def test_curriculum_starts_at_mrd_weights_and_ends_uniform():
    drop = np.array([0.5, 0.1, 0.2, 0.05])
    mrd = probabilities("mrd", 4, drop=drop)
    assert np.allclose(probabilities("mrd_curriculum", 4, drop=drop, step=0, total_steps=20), mrd)
    assert np.allclose(probabilities("mrd_curriculum", 4, drop=drop, step=20, total_steps=20), 0.25)
    half = probabilities("mrd_curriculum", 4, drop=drop, step=10, total_steps=20)
    assert np.allclose(half, 0.5 * mrd + 0.125)


def test_inverse_sampler_favours_high_mrd():
    drop = np.array([0.5, 0.1, 0.2, 0.05])  # MRD = 1/D: sample 3 is the hardest
    inverse = probabilities("mrd_inverse", 4, drop=drop)
    assert np.argmax(inverse) == 3 and np.argmin(inverse) == 0
    assert np.allclose(inverse, (1 / drop) / (1 / drop).sum())
    assert np.allclose(mrd_weights(drop, tau=0.5, inverse=True), drop ** -2 / (drop ** -2).sum())


def test_weights_stay_finite_at_low_temperature():
    w = mrd_weights(np.array([1e-3, 2e-3, 5.0]), tau=0.01)
    assert np.isfinite(w).all() and np.isclose(w.sum(), 1.0) and w[2] > 0.999
