"""Ground truth of difficulty (STUDY 4): for each forget sample alone, the number of gradient-
ascent updates (with the unlearning runs' optimizer and learning rate) until its likelihood
falls to the level the retain model gives it. Capped at M; capped samples are censored."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .models import answer_log_likelihood, collate
from .training import make_optimizer, train
from .unlearning import gradient_ascent


def required_updates(model, forget, retain_level: np.ndarray, *, optimizer: str, lr: float, max_steps: int,
                     pad_id: int, device, desc: str | None = "ground truth") -> pd.DataFrame:
    original = copy.deepcopy(model.state_dict())
    rows = []
    for i in tqdm(range(len(forget)), desc=desc, disable=desc is None):
        model.load_state_dict(original)
        batch = collate([forget[i]], pad_id, device)

        def reached(_step: int) -> bool:
            with torch.no_grad():
                return float(answer_log_likelihood(model, batch)[0]) <= retain_level[i]

        opt = make_optimizer(optimizer, model.parameters(), lr)
        steps, done = train(model, lambda _s: {"forget": batch}, gradient_ascent, opt, max_steps, should_stop=reached)
        rows.append({"sample_id": i, "update_count": steps, "censored": not done})
    model.load_state_dict(original)
    return pd.DataFrame(rows)
