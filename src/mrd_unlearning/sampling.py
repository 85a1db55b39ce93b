"""Forget-set samplers (STUDY 5): which forget samples each unlearning step updates on.

Every sampler draws the same number of samples per step for the same number of steps; they
differ only in the probabilities. The MRD-based ones read D (the mean likelihood drop), so no
weight depends on eps."""
from __future__ import annotations

import numpy as np
import torch

SAMPLERS = ("uniform", "mrd", "mrd_curriculum", "mrd_inverse", "mrd_refresh")


def mrd_weights(drop: np.ndarray, tau: float, *, inverse: bool = False) -> np.ndarray:
    """p_i ~ D_i^(1/tau): easy samples (large drop, small MRD) are drawn more often; with
    `inverse`, p_i ~ MRD_i^(1/tau) = D_i^(-1/tau): hard samples first (the ablation).

    A non-positive D (no measurable drop) gets the smallest positive D of the set, so every
    sample stays reachable and no weight depends on eps.
    """
    drop = np.asarray(drop, dtype=float)
    positive = drop[drop > 0]
    if positive.size == 0:
        return np.full(drop.shape, 1.0 / drop.size)
    exponent = (-1.0 if inverse else 1.0) / tau
    log_w = exponent * np.log(np.maximum(drop, positive.min()))
    w = np.exp(log_w - log_w.max())  # in log space: large 1/tau must not overflow
    return w / w.sum()


def probabilities(sampler: str, n: int, *, drop: np.ndarray | None = None, tau: float = 1.0, step: int = 0,
                  total_steps: int = 1) -> np.ndarray:
    """The sampler's probabilities at `step` of `total_steps` (only the curriculum changes with it:
    p(t) = (1 - t/T) p_mrd + (t/T) uniform, the MRD weights at t = 0, uniform at t = T)."""
    uniform = np.full(n, 1.0 / n)
    if sampler == "uniform":
        return uniform
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; allowed: {list(SAMPLERS)}")
    if drop is None:
        raise ValueError(f"the {sampler} sampler needs MRD drops")
    if sampler == "mrd_inverse":
        return mrd_weights(drop, tau, inverse=True)
    p_mrd = mrd_weights(drop, tau)
    if sampler == "mrd_curriculum":
        t = min(max(step / total_steps, 0.0), 1.0)
        return (1 - t) * p_mrd + t * uniform
    return p_mrd  # mrd, and mrd_refresh between refreshes


def draw(probs: np.ndarray, batch_size: int, generator: torch.Generator) -> list[int]:
    """Indices of one batch, drawn with replacement from `probs`."""
    return torch.multinomial(torch.as_tensor(probs, dtype=torch.float64), batch_size, replacement=True,
                             generator=generator).tolist()
