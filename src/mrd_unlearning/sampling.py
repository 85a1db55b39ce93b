"""Forget-set samplers (STUDY 5): which forget samples each unlearning step updates on."""
from __future__ import annotations

import numpy as np
import torch

SAMPLERS = ("uniform", "mrd")


def mrd_weights(drop: np.ndarray, tau: float) -> np.ndarray:
    """p_i ~ D_i^(1/tau): easy samples (large drop, small MRD) are drawn more often.

    A non-positive D (no measurable drop) gets the smallest positive D of the set, so every
    sample stays reachable and no weight depends on eps.
    """
    drop = np.asarray(drop, dtype=float)
    positive = drop[drop > 0]
    if positive.size == 0:
        return np.full(drop.shape, 1.0 / drop.size)
    w = np.maximum(drop, positive.min()) ** (1.0 / tau)
    return w / w.sum()


def probabilities(sampler: str, n: int, *, drop: np.ndarray | None = None, tau: float = 1.0) -> np.ndarray:
    if sampler == "uniform":
        return np.full(n, 1.0 / n)
    if sampler == "mrd":
        if drop is None:
            raise ValueError("the mrd sampler needs MRD drops")
        return mrd_weights(drop, tau)
    raise ValueError(f"unknown sampler {sampler!r}; allowed: {list(SAMPLERS)}")


def draw(probs: np.ndarray, batch_size: int, generator: torch.Generator) -> list[int]:
    """Indices of one batch, drawn with replacement from `probs`."""
    return torch.multinomial(torch.as_tensor(probs, dtype=torch.float64), batch_size, replacement=True,
                             generator=generator).tolist()
