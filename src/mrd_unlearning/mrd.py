"""Memory Removal Difficulty (STUDY 3): how much a sample's answer likelihood drops when the
weights are perturbed at random. One perturbation per k is applied in place to all trainable
parameters and every sample is scored under it, so the cost is about K + 1 forward passes over
the set; the weights are restored bit-exactly from one saved copy."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .models import answer_log_likelihood, batches


@dataclass
class MRDResult:
    loglik: np.ndarray  # L(z; theta), per sample
    drops: np.ndarray  # d_k(z), shape (K, N)
    sigma: float
    positive_share: float  # share of (k, z) with d_k(z) > 0
    searched: list[dict] = field(default_factory=list)  # sigma auto's grid: sigma, positive_share


def perturbation_seed(seed: int, k: int) -> int:
    """Independent, reproducible noise stream per (seed, k): the same for every sample."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


@torch.no_grad()
def score_loglik(model, encoded, batch_size: int, pad_id: int, device) -> np.ndarray:
    return torch.cat([answer_log_likelihood(model, b) for b in batches(encoded, batch_size, pad_id, device)]).cpu().numpy()


@torch.no_grad()
def perturbation_drops(model, encoded, *, K: int, sigma: float, seed: int, sigma_mode: str, batch_size: int,
                       pad_id: int, device, base: np.ndarray | None = None, desc: str | None = None):
    """Return (L(z; theta), d_k(z) for k < K). Parameters are bit-identical afterwards."""
    params = [p for p in model.parameters() if p.requires_grad]
    if base is None:
        base = score_loglik(model, encoded, batch_size, pad_id, device)
    original = [p.detach().clone() for p in params]
    scales = [sigma * float(p.detach().float().pow(2).mean().sqrt()) if sigma_mode == "relative" else sigma
              for p in params]
    drops = np.empty((K, len(encoded)))

    def restore() -> None:
        for p, o in zip(params, original):
            p.copy_(o)

    try:
        for k in tqdm(range(K), desc=desc, disable=desc is None, leave=False):
            gen = torch.Generator(device=device).manual_seed(perturbation_seed(seed, k))
            for p, scale in zip(params, scales):
                p.add_(torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype), alpha=scale)
            drops[k] = base - score_loglik(model, encoded, batch_size, pad_id, device)
            restore()
    except BaseException:
        restore()  # never hand back perturbed weights, even when interrupted
        raise
    return base, drops


def difficulty_drop(result: MRDResult, statistic: str, normalize: str) -> np.ndarray:
    """D(z): the mean drop (signed or absolute), optionally relative to |L(z)|."""
    d = result.drops if statistic == "signed" else np.abs(result.drops)
    D = d.mean(axis=0)
    if normalize == "relative":
        D = D / np.abs(result.loglik)
    return D


def mrd_from_drop(D: np.ndarray, eps: float) -> np.ndarray:
    return 1.0 / np.maximum(D, eps)


def estimate(model, encoded, *, K: int, sigma, sigma_grid: list[float], positive_share: float, seed: int,
             sigma_mode: str, batch_size: int, pad_id: int, device) -> MRDResult:
    """Monte Carlo drops at a given sigma, or with sigma 'auto' at the smallest grid sigma whose
    share of positive drops reaches `positive_share` (the curvature regime, STUDY 3.2)."""
    model.eval()
    kw = dict(K=K, seed=seed, sigma_mode=sigma_mode, batch_size=batch_size, pad_id=pad_id, device=device)
    base = score_loglik(model, encoded, batch_size, pad_id, device)
    if sigma != "auto":
        _, drops = perturbation_drops(model, encoded, sigma=float(sigma), base=base, desc=f"MRD sigma={sigma}", **kw)
        return MRDResult(base, drops, float(sigma), float((drops > 0).mean()))
    searched, best = [], None
    for s in sorted(sigma_grid):
        _, drops = perturbation_drops(model, encoded, sigma=s, base=base, desc=f"MRD sigma={s}", **kw)
        share = float((drops > 0).mean())
        searched.append({"sigma": s, "positive_share": share})
        if best is None or share > best.positive_share:
            best = MRDResult(base, drops, s, share, searched)
        if share >= positive_share:
            return MRDResult(base, drops, s, share, searched)
    return best  # no grid value reached the target: the most curvature-dominated one, recorded as such
