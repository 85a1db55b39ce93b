import numpy as np
import pytest
import torch
from scipy import stats

from mrd_unlearning.sampling import draw, drive_by, mrd_weights, parse_arm, picks, probabilities, rum_stage


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


def test_sorted_walks_easy_to_hard_in_a_fixed_order_and_wraps():
    drop = np.array([0.2, 0.5, 0.1, 0.4])  # easy to hard: 1, 3, 0, 2
    gen = torch.Generator().manual_seed(0)
    steps = [picks("sorted", 4, 3, gen, drop=drop, step=t) for t in range(3)]
    assert steps == [[1, 3, 0], [2, 1, 3], [0, 2, 1]]
    assert gen.initial_seed() == 0 and torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())


def test_rum_draws_the_terciles_easy_to_hard_then_uniform():
    drop = np.array([0.9, 0.1, 0.5, 0.8, 0.2, 0.4])  # easy to hard: 0, 3, 2, 5, 4, 1
    stages = [set(np.flatnonzero(probabilities("rum", 6, drop=drop, step=t, total_steps=9))) for t in (0, 3, 6)]
    assert stages == [{0, 3}, {2, 5}, {1, 4}]
    assert [rum_stage(t, 9) for t in range(10)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, None]
    assert np.allclose(probabilities("rum", 6, drop=drop, step=9, total_steps=9), 1 / 6)  # past the budget
    counts = np.bincount(picks("rum", 6, 20_000, torch.Generator().manual_seed(2), drop=drop, step=4, total_steps=9),
                         minlength=6)
    assert counts[[0, 1, 3, 4]].sum() == 0 and stats.chisquare(counts[[2, 5]]).pvalue > 1e-3


def test_a_sampler_driven_by_another_score_hands_out_mrds_weights_in_its_order():
    drop = np.array([0.4, 0.1, 0.3, 0.2])
    loss = np.array([0.5, 2.0, 0.1, 1.0])  # low loss = hard (SCORES): easy to hard 1, 3, 0, 2
    driven = drive_by(drop, loss, harder_when_higher=False)
    assert np.allclose(driven, [0.2, 0.4, 0.1, 0.3]) and np.allclose(np.sort(driven), np.sort(drop))
    assert np.allclose(np.sort(mrd_weights(driven, 1.0)), np.sort(mrd_weights(drop, 1.0)))  # the same spread
    assert np.allclose(drive_by(drop, -loss, harder_when_higher=True), driven)
    tied = drive_by(drop, np.array([1.0, 1.0, 0.0, 2.0]), harder_when_higher=True)  # samples 0 and 1 tie
    assert np.allclose(tied, [0.25, 0.25, 0.4, 0.1])
    with pytest.raises(ValueError, match="missing"):
        drive_by(drop, np.array([1.0, np.nan, 0.0, 2.0]), True)
    assert parse_arm("mrd@loss") == ("mrd", "loss") and parse_arm("rum") == ("rum", "mrd")


def test_config_sampler_names_follow_the_code():
    """The schema's pattern lists the samplers and scores the code knows."""
    import re

    from mrd_unlearning.config import load_schema
    from mrd_unlearning.difficulty import SCORES
    from mrd_unlearning.sampling import SAMPLERS

    pattern = load_schema()["properties"]["unlearning"]["properties"]["samplers"]["items"]["pattern"]
    named = set(re.findall(r"[a-z_]+", pattern))
    assert set(SAMPLERS) <= named and set(SCORES) - {"mrd"} <= named
    assert re.fullmatch(pattern, "sorted@memorization") and not re.fullmatch(pattern, "uniform@loss")
