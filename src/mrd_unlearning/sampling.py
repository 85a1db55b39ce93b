"""Forget-set samplers: which forget samples each unlearning step updates on.

Every sampler draws the same number of samples per step for the same number of steps; they
differ only in which. The MRD-based ones read D (the mean likelihood drop; large D = easy), so
no weight depends on eps. Beside the paper's weighted samplers, the field's curricula: `sorted`
(easy to hard in a fixed order, cycling) and `rum` (Zhao et al. 2024's meta-algorithm adapted:
the terciles of difficulty in sequence, easy to hard, each for a third of the budget).

A sampler driven by another difficulty score (`mrd@loss`, `sorted@memorization`, ...) reads
MRD's own drops reassigned to the samples in that score's order (`drive_by`): the same weights,
handed out by another ranking, so that a comparison isolates the ranking from the weights' spread."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:  # torch loads on first draw: the table-only jobs that read these names stay light
    import torch

WEIGHTED = ("mrd", "mrd_curriculum", "mrd_inverse", "mrd_refresh")
CURRICULA = ("sorted", "rum")
SAMPLERS = ("uniform", *WEIGHTED, *CURRICULA)
RUM_STAGES = 3


def parse_arm(arm: str) -> tuple[str, str]:
    """'mrd@loss' -> ('mrd', 'loss'); 'mrd_curriculum' -> ('mrd_curriculum', 'mrd')."""
    sampler, _, score = arm.partition("@")
    return sampler, score or "mrd"


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


def drive_by(drop: np.ndarray, score: np.ndarray, harder_when_higher: bool) -> np.ndarray:
    """MRD's drops reassigned in the order of another difficulty score: the easiest sample by
    `score` gets the largest drop, the hardest the smallest; tied samples share the drop at
    their average rank. The multiset of drops, and so the weights' spread, stays MRD's."""
    drop, score = np.asarray(drop, dtype=float), np.asarray(score, dtype=float)
    if np.isnan(score).any():
        raise ValueError("the driving difficulty score has missing values")
    ease_rank = stats.rankdata(-score if harder_when_higher else score) - 1  # 0 = hardest
    return np.interp(ease_rank, np.arange(len(drop)), np.sort(drop))


def easy_to_hard(drop: np.ndarray) -> np.ndarray:
    """Sample indices from the largest drop (easiest) to the smallest; ties by index."""
    return np.argsort(-np.asarray(drop, dtype=float), kind="stable")


def rum_stage(step: int, total_steps: int) -> int | None:
    """Which tercile `rum` draws from at `step`: 0 (easiest) .. 2; None past the budget (uniform)."""
    return None if step >= total_steps else min(RUM_STAGES - 1, step * RUM_STAGES // total_steps)


def probabilities(sampler: str, n: int, *, drop: np.ndarray | None = None, tau: float = 1.0, step: int = 0,
                  total_steps: int = 1) -> np.ndarray:
    """The sampler's probabilities at `step` of `total_steps` (the curriculum changes with it:
    p(t) = (1 - t/T) p_mrd + (t/T) uniform, the MRD weights at t = 0, uniform at t = T; `rum` is
    uniform within its stage's tercile, and over every sample past the budget)."""
    uniform = np.full(n, 1.0 / n)
    if sampler == "uniform":
        return uniform
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; allowed: {list(SAMPLERS)}")
    if drop is None:
        raise ValueError(f"the {sampler} sampler needs MRD drops")
    if sampler == "sorted":
        raise ValueError("the sorted sampler has a fixed order, not probabilities: use `picks`")
    if sampler == "rum":
        stage = rum_stage(step, total_steps)
        if stage is None:
            return uniform
        members = np.array_split(easy_to_hard(drop), RUM_STAGES)[stage]
        p = np.zeros(n)
        p[members] = 1.0 / len(members)
        return p
    if sampler == "mrd_inverse":
        return mrd_weights(drop, tau, inverse=True)
    p_mrd = mrd_weights(drop, tau)
    if sampler == "mrd_curriculum":
        t = min(max(step / total_steps, 0.0), 1.0)
        return (1 - t) * p_mrd + t * uniform
    return p_mrd  # mrd, and mrd_refresh between refreshes


def draw(probs: np.ndarray, batch_size: int, generator: torch.Generator) -> list[int]:
    """Indices of one batch, drawn with replacement from `probs`."""
    import torch

    return torch.multinomial(torch.as_tensor(probs, dtype=torch.float64), batch_size, replacement=True,
                             generator=generator).tolist()


def picks(sampler: str, n: int, size: int, generator: torch.Generator, *, drop: np.ndarray | None = None,
          tau: float = 1.0, step: int = 0, total_steps: int = 1) -> list[int]:
    """The `size` forget samples of one update at `step`: `sorted` walks the easy-to-hard order
    (wrapping round), the others draw from their probabilities with `generator`."""
    if sampler == "sorted":
        if drop is None:
            raise ValueError("the sorted sampler needs MRD drops")
        order = easy_to_hard(drop)
        return [int(order[(step * size + j) % n]) for j in range(size)]
    return draw(probabilities(sampler, n, drop=drop, tau=tau, step=step, total_steps=total_steps), size, generator)
