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
