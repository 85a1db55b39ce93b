"""Unlearning algorithms as losses plugged into the one training loop (STUDY 5).

A loss takes the model and a batch {"forget": ..., "retain": ...}; adding an algorithm means
adding one function to ALGORITHMS."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .models import collate, nll_loss
from .mrd import score_loglik
from .sampling import draw, probabilities
from .training import make_optimizer, train


def gradient_ascent(model, batch: dict) -> torch.Tensor:
    """GA: maximise the forget-set NLL."""
    return -nll_loss(model, batch["forget"])


ALGORITHMS: dict[str, Callable] = {"ga": gradient_ascent}


def unlearn(model, forget, retain_eval, *, algorithm: str, sampler: str, drop: np.ndarray | None, steps: int,
            batch_size: int, lr: float, optimizer: str, tau: float, seed: int, log_every: int, pad_id: int,
            device) -> tuple[pd.DataFrame, float]:
    """Run one unlearning job; return its curve (forget / retain mean L every `log_every` steps)
    and its wall time in seconds."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; allowed: {sorted(ALGORITHMS)}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    probs = probabilities(sampler, len(forget), drop=drop, tau=tau)
    opt = make_optimizer(optimizer, model.parameters(), lr)
    curve: list[dict] = []

    def log(step: int) -> bool:
        if step % log_every == 0 or step == steps:
            model.eval()
            curve.append({"step": step,
                          "forget_loglik": float(score_loglik(model, forget, 64, pad_id, device).mean()),
                          "retain_loglik": float(score_loglik(model, retain_eval, 64, pad_id, device).mean())})
            model.train()
        return False

    def batch_at(step: int) -> dict:
        return {"forget": collate([forget[i] for i in draw(probs, batch_size, generator)], pad_id, device)}

    start = time.perf_counter()
    train(model, batch_at, ALGORITHMS[algorithm], opt, steps, should_stop=log, desc=f"{algorithm}/{sampler}/{seed}")
    model.eval()
    return pd.DataFrame(curve), time.perf_counter() - start
