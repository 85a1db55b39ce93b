"""Ground truth of difficulty: for each forget sample alone, the number of gradient-
ascent updates (with the unlearning runs' optimizer and learning rate) until its likelihood
falls to the level the retain model gives it. Capped at M; capped samples are censored.

Between samples the weights are restored from one copy kept in memory (the GPU's, or with
`reset_copy` 'host' the CPU's, which leaves room for a 7B model's AdamW state), never reloaded
from disk, and the optimizer starts afresh: 400 forget samples cost 400 in-memory copies, not
400 checkpoint loads."""
from __future__ import annotations


import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .models import answer_log_likelihood, collate
from .precision import Precision
from .training import make_optimizer, train
from .unlearning import gradient_ascent


def required_updates(model, forget, retain_level: np.ndarray, *, optimizer: str, lr: float, max_steps: int,
                     pad_id: int, device, desc: str | None = "ground truth", sample_ids: list[int] | None = None,
                     precision: Precision | None = None, reset_copy: str = "device") -> pd.DataFrame:
    """Update counts of the forget samples `sample_ids` (default: all), with the precision
    policy's autocast for the updates and the weights' own dtype for the stopping rule. Each row
    keeps its likelihood curve (`loglik_curve`: L after 0, 1, ... updates, as the stopping rule
    measured it) for the per-sample browser; `curves_table` writes it out."""
    if reset_copy not in ("device", "host"):
        raise ValueError(f"config key 'ground_truth.reset_copy': {reset_copy!r}; allowed values: ['device', 'host']")
    home = "cpu" if reset_copy == "host" else None  # None: where each tensor already is
    original = {k: v.detach().to(home or v.device, copy=True) for k, v in model.state_dict().items()}
    rows = []
    for i in tqdm(range(len(forget)) if sample_ids is None else sample_ids, desc=desc, disable=desc is None):
        model.load_state_dict(original)
        batch = collate([forget[i]], pad_id, device)

        curve: list[float] = []  # L after 0, 1, ... updates

        def reached(_step: int) -> bool:
            with torch.no_grad():
                curve.append(float(answer_log_likelihood(model, batch)[0]))
            return curve[-1] <= retain_level[i]

        opt = make_optimizer(optimizer, model.parameters(), lr)
        steps, done = train(model, lambda _s: {"forget": batch}, gradient_ascent, opt, max_steps, should_stop=reached,
                            precision=precision)
        rows.append({"sample_id": i, "update_count": steps, "censored": not done,
                     "update_count_frac": fractional_crossing(curve, retain_level[i], max_steps),
                     "loglik_curve": curve})
    model.load_state_dict(original)
    return pd.DataFrame(rows)


def curves_table(counts: pd.DataFrame, retain_level: np.ndarray) -> pd.DataFrame:
    """The likelihood curves of `required_updates`, one row per (sample, update), beside the level
    each sample had to reach: a reviewer can recompute every count and crossing from it."""
    rows = [{"sample_id": r.sample_id, "updates": step, "loglik": value, "retain_level": float(retain_level[r.sample_id])}
            for r in counts.itertuples() for step, value in enumerate(r.loglik_curve)]
    return pd.DataFrame(rows, columns=["sample_id", "updates", "loglik", "retain_level"])


def fractional_crossing(curve: list[float], level: float, cap: int) -> float:
    """The fractional step at which a likelihood curve (L after 0, 1, ... updates) first falls to
    `level`, interpolated linearly between the last step above it and the first at or below:
    integer counts tie heavily (on TOFU 18 of 40 samples share one count), the crossing point
    ranks them. 0 when the curve starts at or below the level; `cap` when it never gets there
    (censored, flagged beside it)."""
    for step, value in enumerate(curve):
        if value <= level:
            if step == 0:
                return 0.0
            before = curve[step - 1]
            return float(step - 1 + (before - level) / (before - value))
    return float(cap)


def subsample(n: int, max_samples: int | None, seed: int) -> list[int] | None:
    """ground_truth.max_samples: a seeded subsample of the forget set (the same in every
    replicate, so the pooled statistics pair the same samples); None = every sample."""
    if max_samples is None or max_samples >= n:
        return None
    return sorted(np.random.default_rng(seed).choice(n, size=max_samples, replace=False).tolist())
