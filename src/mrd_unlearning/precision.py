"""The one precision policy (model.precision) of every job that trains, scores or evaluates a model.

Trained weights and their optimizer state stay float32 ("master weights") and the forward and
backward passes run under bfloat16 autocast, as TOFU and OpenUnlearning train (bf16 mixed
precision): an AdamW update at lr 1e-5 is below half the bf16 spacing of a typical weight, so
bf16 weights updated in place barely move ("bf16" keeps that behaviour, for comparison only).
Frozen models (NPO/KL's reference, a job that only evaluates) may hold bf16 weights. Likelihoods
that MRD, the ground truth's stopping rule and the curves read are computed with the weights'
own dtype, outside autocast, and reduced in float64."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "bf16-mixed", "fp32", "bf16")


@dataclass(frozen=True)
class Precision:
    name: str  # resolved: bf16-mixed | fp32 | bf16
    weights: torch.dtype  # trained (and MRD-perturbed) weights and their optimizer state
    frozen: torch.dtype  # reference models and evaluation-only jobs
    compute: torch.dtype | None  # autocast dtype of training steps and generation; None = the weights'
    device_type: str

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.compute is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.compute)


def resolve_precision(name: str, device: torch.device | str) -> Precision:
    """auto: bf16-mixed on a CUDA device with bf16 support, fp32 elsewhere (bf16 on a CPU is
    slow, and the CPU studies are float32 throughout)."""
    device = torch.device(device)
    if name not in PRECISIONS:
        raise ValueError(f"config key 'model.precision': {name!r} is not allowed; allowed values: {list(PRECISIONS)}")
    if name == "auto":
        name = "bf16-mixed" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    weights, frozen, compute = {
        "bf16-mixed": (torch.float32, torch.bfloat16, torch.bfloat16),
        "fp32": (torch.float32, torch.float32, None),
        "bf16": (torch.bfloat16, torch.bfloat16, None),
    }[name]
    return Precision(name, weights, frozen, compute, device.type)


def autocast(policy: Precision | None) -> contextlib.AbstractContextManager:
    """The policy's autocast; none without a policy (the callers that pass none train in fp32)."""
    return policy.autocast() if policy is not None else contextlib.nullcontext()


def bytes_per(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
