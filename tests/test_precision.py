"""The precision policy: why bf16 weights cannot be trained in place at TOFU's learning rate, and
that float32 master weights under bf16 autocast (bf16-mixed) update as float32 does. bf16
autocast runs on a CPU, so this needs no GPU."""
from __future__ import annotations

import copy

import pytest
import torch

from mrd_unlearning.models import collate, nll_loss, with_lora
from mrd_unlearning.precision import resolve_precision
from mrd_unlearning.training import make_optimizer, train
from mrd_unlearning.unlearning import DisabledAdapters, frozen_reference

from .conftest import tiny_model

LR = 1e-5  # TOFU's fine-tuning and unlearning rate


def test_auto_is_fp32_on_a_cpu_and_bf16_mixed_keeps_float32_master_weights():
    auto = resolve_precision("auto", "cpu")
    assert (auto.name, auto.weights, auto.compute) == ("fp32", torch.float32, None)
    mixed = resolve_precision("bf16-mixed", "cpu")
    assert (mixed.weights, mixed.frozen, mixed.compute) == (torch.float32, torch.bfloat16, torch.bfloat16)
    with pytest.raises(ValueError, match="model.precision"):
        resolve_precision("fp16", "cpu")


def _one_adamw_step(model, batch, precision_name):
    before = [p.detach().clone() for p in model.parameters()]
    opt = make_optimizer("adamw", model.parameters(), LR)
    train(model, lambda _s: batch, lambda m, b: nll_loss(m, b), opt, 1,
          precision=resolve_precision(precision_name, "cpu"))
    return [(p.detach().float() - b.float()) for p, b in zip(model.parameters(), before)]


def test_pure_bf16_adamw_rounds_updates_away_and_bf16_mixed_updates_as_fp32(tokenizer, forget_encoded):
    batch = collate(forget_encoded[:8], tokenizer.pad_token_id)
    reference = tiny_model(tokenizer, hidden=32)  # initialised at std 0.02: bf16 spacing ~1.2e-4 there
    fp32 = _one_adamw_step(copy.deepcopy(reference), batch, "fp32")
    mixed = _one_adamw_step(copy.deepcopy(reference), batch, "bf16-mixed")
    bf16 = _one_adamw_step(copy.deepcopy(reference).to(torch.bfloat16), batch, "bf16")

    def changed(deltas):
        return float(sum((d != 0).sum() for d in deltas) / sum(d.numel() for d in deltas))

    assert changed(fp32) > 0.95  # Adam's first step moves every weight with a gradient by ~lr
    assert changed(bf16) < 0.3, changed(bf16)  # most updates are below half a bf16 spacing
    assert changed(mixed) > 0.95
    flat = lambda deltas: torch.cat([d.flatten() for d in deltas])  # noqa: E731
    a, b = flat(fp32), flat(mixed)
    moved = (a != 0) & (b != 0)
    # bf16 compute perturbs the gradients, not the size of the step: Adam's first step is ~lr x sign(g)
    assert float((torch.sign(a[moved]) == torch.sign(b[moved])).float().mean()) > 0.9
    assert torch.allclose(b[moved].abs().mean(), torch.tensor(LR), rtol=0.05)


def test_frozen_reference_is_a_bf16_copy_and_lora_reference_is_the_adapters_off(tokenizer, forget_encoded):
    model = tiny_model(tokenizer)
    reference = frozen_reference(model, torch.bfloat16)
    assert reference is not model and next(reference.parameters()).dtype == torch.bfloat16
    assert not any(p.requires_grad for p in reference.parameters())

    batch = collate(forget_encoded[:4], tokenizer.pad_token_id)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        base_logits = model(**inputs).logits
    lora = with_lora(model, {"r": 4, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    for name, p in lora.named_parameters():  # move the adapters, so that on and off differ
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    off = frozen_reference(lora)
    assert isinstance(off, DisabledAdapters)
    with torch.no_grad():
        assert torch.equal(off(**inputs).logits, base_logits)
        assert not torch.allclose(lora(**inputs).logits, base_logits)
