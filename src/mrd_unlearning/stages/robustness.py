"""Rule attack_controls: the attacks on models with nothing to uncover, so that recovery can be
read beyond what an attack does on its own. Relearning runs on the retain model (it never saw the
forget set: what comes back there was taught, not uncovered); quantization on the fine-tuned
target (what rounding alone changes)."""
from __future__ import annotations

import pandas as pd

from ..data.loader import load_study_data
from ..io import write_csv
from ..models import with_lora
from ..robustness import attack_study
from .common import _load, setup


def attack_controls(target_dir: str, retain_dir: str, data_dir: str, out_csv: str, *, robustness_cfg: dict,
                    eval_cfg: dict, lr: float, max_length: int, device: str, precision: str, threads: int,
                    lora: dict | None = None) -> None:
    """controls.csv: `attack`, `model` (retain or target), sample_id and the measures, the same
    attacks (folds, order, budgets, lr) as every unlearning run's."""
    data = load_study_data(data_dir)
    frames = []
    for model_dir, role, attacks in ((retain_dir, "retain", ("relearning",)), (target_dir, "target", ("quantization",))):
        setup(threads, robustness_cfg["seed"])
        model, tokenizer, dev, policy = _load(model_dir, device, precision)
        if role == "retain":
            model = with_lora(model, lora or {})  # relearned as the unlearned runs are: their adapters only
        frames.append(attack_study(model, tokenizer, data, robustness_cfg, eval_cfg, lr=lr, device=dev,
                                   max_length=max_length, precision=policy, attacks=attacks).assign(model=role))
    write_csv(out_csv, pd.concat(frames, ignore_index=True))
