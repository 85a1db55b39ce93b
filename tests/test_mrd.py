import numpy as np
import pytest
import torch
from torch.func import functional_call

from mrd_unlearning.models import answer_log_likelihood, collate
from mrd_unlearning.mrd import (Estimator, MRDResult, PerturbationScorer, difficulty_drop, mrd_from_drop,
                                perturbation_drops, score_loglik)
from mrd_unlearning.training import finetune

from .conftest import tiny_model


def _kw(tokenizer, **extra):
    return dict(seed=0, sigma_mode="absolute", batch_size=4, pad_id=tokenizer.pad_token_id, device="cpu", **extra)


def test_parameters_bit_identical_and_seed_reproducible(model, forget_encoded, tokenizer):
    before = [p.detach().clone() for p in model.parameters()]
    base, drops = perturbation_drops(model, forget_encoded, K=3, sigma=0.05, **_kw(tokenizer))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    _, again = perturbation_drops(model, forget_encoded, K=3, sigma=0.05, **_kw(tokenizer))
    assert np.array_equal(drops, again)
    other = perturbation_drops(model, forget_encoded, K=3, sigma=0.05, **{**_kw(tokenizer), "seed": 1})[1]
    assert not np.allclose(drops, other)
    assert np.array_equal(base, score_loglik(model, forget_encoded, 4, tokenizer.pad_token_id, "cpu"))


def test_scores_do_not_depend_on_batch_size(model, forget_encoded, tokenizer):
    _, a = perturbation_drops(model, forget_encoded, K=3, sigma=0.05, **_kw(tokenizer))
    _, b = perturbation_drops(model, forget_encoded, K=3, sigma=0.05, **{**_kw(tokenizer), "batch_size": 1})
    assert np.allclose(a, b, atol=1e-6, rtol=0)


def test_common_random_numbers_across_samples(model, forget_encoded, tokenizer):
    """A sample's drops are the same whether scored with the whole set or alone."""
    _, all_drops = perturbation_drops(model, forget_encoded, K=3, sigma=0.05, **_kw(tokenizer))
    _, one = perturbation_drops(model, forget_encoded[2:3], K=3, sigma=0.05, **_kw(tokenizer))
    assert np.allclose(all_drops[:, 2], one[:, 0], atol=1e-6, rtol=0)


def _hessian_trace(model, batch) -> float:
    """Exact trace of the Hessian of L(z) w.r.t. the trainable parameters (float64)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for n, p in model.named_parameters() if p.requires_grad]
    flat0 = torch.cat([p.detach().reshape(-1) for n, p in model.named_parameters() if p.requires_grad])

    def loglik(flat):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = flat[i:i + s.numel()].reshape(s)
            i += s.numel()
        bound = lambda **kw: functional_call(model, params, args=(), kwargs=kw)  # noqa: E731
        return answer_log_likelihood(bound, batch)[0]

    return float(torch.autograd.functional.hessian(loglik, flat0).diagonal().sum())


@pytest.fixture(scope="module")
def curvature_model(tokenizer, forget_encoded):
    """A float64 tiny model fine-tuned on two samples (not saturated), so that curvature, not the
    first-order term, dominates the drops; and the exact Hessian trace of each sample's L."""
    model = tiny_model(tokenizer, hidden=8)
    finetune(model, forget_encoded[:2], lr=0.01, weight_decay=0.0, batch_size=2, max_epochs=150,
             memorization_accuracy_target=0.8, seed=0, pad_id=tokenizer.pad_token_id, device="cpu", desc=None)
    model = model.double()
    model.set_attn_implementation("eager")  # SDPA has no double backward on CPU
    model.model.embed_tokens.weight.requires_grad_(False)  # keep the exact Hessian small (~1k parameters)
    traces = [_hessian_trace(model, collate(forget_encoded[i:i + 1], tokenizer.pad_token_id)) for i in range(2)]
    return model, traces


@pytest.mark.parametrize("K", [200, 2000])
def test_monte_carlo_drop_matches_hessian_trace(curvature_model, tokenizer, forget_encoded, K):
    """E[D] = -(sigma^2 / 2) tr(H) to second order; the tolerance is 4 Monte Carlo
    standard errors (shrinking as 1/sqrt(K)) plus 5% for higher-order terms."""
    model, traces = curvature_model
    sigma = 0.01
    for i, trace in enumerate(traces):
        expected = -(sigma ** 2 / 2) * trace
        _, drops = perturbation_drops(model, forget_encoded[i:i + 1], K=K, sigma=sigma, **_kw(tokenizer))
        tolerance = 4 * drops[:, 0].std(ddof=1) / np.sqrt(K) + 0.05 * abs(expected)
        assert tolerance < 0.5 * abs(expected)  # the check can fail: a factor-2 error would
        assert abs(drops[:, 0].mean() - expected) < tolerance, (i, drops.mean(), expected)


def test_sigma_auto_picks_smallest_grid_value_in_curvature_regime(tokenizer, forget_encoded):
    model = tiny_model(tokenizer)
    grid = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    kw = _kw(tokenizer)
    shares = [(perturbation_drops(model, forget_encoded, K=8, sigma=s, **kw)[1] > 0).mean() for s in grid]
    # At tiny sigma the first-order term dominates (about half the drops positive); at large sigma
    # curvature does. The brute-force shares are the known answer.
    assert shares[0] < 0.9 and shares[-1] >= 0.9
    scorer = PerturbationScorer(model, forget_encoded, batch_size=4, pad_id=tokenizer.pad_token_id, device="cpu",
                                progress=False)
    chosen = scorer.estimate(Estimator(sigma="auto", K=8), seed=0, sigma_grid=grid, positive_share=0.9)
    first = next(s for s, share in zip(grid, shares) if share >= 0.9)
    assert chosen.sigma == first
    assert chosen.positive_share >= 0.9
    assert [x["sigma"] for x in chosen.searched] == grid[: grid.index(first) + 1]


def test_statistics_and_mrd():
    drops = np.array([[0.2, -0.1, 0.0], [0.4, -0.3, 0.0]])
    result = MRDResult(loglik=np.array([-0.5, -2.0, -1.0]), drops=drops, sigma=0.1, positive_share=1 / 3)
    assert np.allclose(difficulty_drop(result, "signed", "none"), [0.3, -0.2, 0.0])
    assert np.allclose(difficulty_drop(result, "abs", "none"), [0.3, 0.2, 0.0])
    assert np.allclose(difficulty_drop(result, "signed", "relative"), [0.6, -0.1, 0.0])
    assert np.allclose(mrd_from_drop(np.array([0.5, -1.0]), eps=1e-3), [2.0, 1e3])


def test_scorer_reuses_perturbations_and_extends_K(model, forget_encoded, tokenizer):
    """A smaller K is the first K perturbations of a larger one; nothing is computed twice."""
    scorer = PerturbationScorer(model, forget_encoded, batch_size=4, pad_id=tokenizer.pad_token_id, device="cpu",
                                progress=False)
    three = scorer.drops(sigma=0.05, sigma_mode="absolute", seed=0, K=3)
    five = scorer.drops(sigma=0.05, sigma_mode="absolute", seed=0, K=5)
    assert scorer.forward_passes == 1 + 5
    assert np.array_equal(five[:3], three)
    _, direct = perturbation_drops(model, forget_encoded, K=5, sigma=0.05, **_kw(tokenizer))
    assert np.array_equal(five, direct)
    scorer.drops(sigma=0.05, sigma_mode="absolute", seed=0, K=4)
    assert scorer.forward_passes == 6


@pytest.mark.parametrize("sigma_mode", ["absolute", "relative"])
def test_noise_scale_per_tensor(model, forget_encoded, tokenizer, monkeypatch, sigma_mode):
    """The noise added to each tensor under perturbation k has std sigma (absolute) or sigma times
    the tensor's RMS (relative), observed from inside the perturbed forward pass."""
    import mrd_unlearning.mrd as mrd

    params = [p for p in model.parameters() if p.requires_grad]
    original = [p.detach().clone() for p in params]
    seen = []
    real = mrd.score_loglik

    def spy(*a, **kw):
        seen.append([(p.detach() - o) for p, o in zip(params, original)])
        return real(*a, **kw)

    monkeypatch.setattr(mrd, "score_loglik", spy)
    sigma = 0.05
    perturbation_drops(model, forget_encoded, K=2, sigma=sigma, **{**_kw(tokenizer), "sigma_mode": sigma_mode})
    for deltas in seen[1:]:  # seen[0] is the unperturbed pass
        for delta, o in zip(deltas, original):
            if o.numel() < 500:
                continue  # too few draws for a tight std estimate
            expected = sigma * (float(o.pow(2).mean().sqrt()) if sigma_mode == "relative" else 1.0)
            assert abs(float(delta.std()) / expected - 1) < 0.15


def test_scoring_leaves_weights_bit_identical_even_when_interrupted(model, forget_encoded, tokenizer, monkeypatch):
    import mrd_unlearning.mrd as mrd

    before = [p.detach().clone() for p in model.parameters()]
    calls = {"n": 0}
    real = mrd.score_loglik

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the first perturbed pass
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(mrd, "score_loglik", failing)
    with pytest.raises(KeyboardInterrupt):
        perturbation_drops(model, forget_encoded, K=3, sigma=0.5, **_kw(tokenizer))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
