"""On a CUDA device (skipped elsewhere; CI has none): the precision policy, MRD's bit-exact
restore and its float64 likelihoods, and a training step of the one loop under bf16 autocast.
Run on a GPU machine with `pytest -m gpu`."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mrd_unlearning.models import collate, nll_loss
from mrd_unlearning.mrd import perturbation_drops, score_loglik
from mrd_unlearning.precision import resolve_precision
from mrd_unlearning.training import make_optimizer, train

from .conftest import tiny_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = torch.device("cuda")


def test_auto_precision_on_cuda_is_bf16_mixed():
    policy = resolve_precision("auto", CUDA)
    assert policy.name == "bf16-mixed" and policy.weights == torch.float32 and policy.compute == torch.bfloat16


def test_bf16_mixed_step_on_cuda_moves_every_weight_like_fp32(tokenizer, forget_encoded):
    batch = collate(forget_encoded[:8], tokenizer.pad_token_id, CUDA)
    start = tiny_model(tokenizer, hidden=32).to(CUDA)
    deltas = {}
    for name, weights in (("fp32", torch.float32), ("bf16-mixed", torch.float32), ("bf16", torch.bfloat16)):
        model = copy.deepcopy(start).to(weights)
        before = [p.detach().float().clone() for p in model.parameters()]
        train(model, lambda _s: batch, lambda m, b: nll_loss(m, b), make_optimizer("adamw", model.parameters(), 1e-5),
              1, precision=resolve_precision(name, CUDA))
        deltas[name] = torch.cat([(p.detach().float() - b).flatten() for p, b in zip(model.parameters(), before)])
    share = {k: float((d != 0).float().mean()) for k, d in deltas.items()}
    assert share["fp32"] > 0.95 and share["bf16-mixed"] > 0.95 and share["bf16"] < 0.3, share


def test_mrd_restores_weights_bit_exactly_on_cuda(tokenizer, forget_encoded):
    model = tiny_model(tokenizer).to(CUDA).eval()
    before = [p.detach().clone() for p in model.parameters()]
    base, drops = perturbation_drops(model, forget_encoded, K=4, sigma=0.01, seed=0, sigma_mode="absolute",
                                     batch_size=8, pad_id=tokenizer.pad_token_id, device=CUDA)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert base.dtype == np.float64 and np.isfinite(drops).all() and (drops != 0).any()
    again = perturbation_drops(model, forget_encoded, K=4, sigma=0.01, seed=0, sigma_mode="absolute", batch_size=8,
                               pad_id=tokenizer.pad_token_id, device=CUDA)[1]
    np.testing.assert_allclose(drops, again, atol=1e-6)  # the same perturbations (seeded generator on the device)
    cpu = score_loglik(model.cpu(), forget_encoded, 8, tokenizer.pad_token_id, "cpu")
    np.testing.assert_allclose(base, cpu, atol=1e-4)
