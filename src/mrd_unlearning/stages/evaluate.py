"""Rule evaluate_finetuned: a fine-tuned model's evaluation, TOFU's and OpenUnlearning's layouts."""
from __future__ import annotations

import pandas as pd

from ..data.loader import load_study_data
from ..evaluation import evaluate, openunlearning_eval
from ..io import write_csv, write_json
from .common import _load, setup


def evaluate_model(model_dir: str, data_dir: str, summary_json: str, samples_csv: str, openunlearning_json: str, *,
                   eval_cfg: dict, max_length: int, device: str, precision: str, threads: int,
                   reference_csv: str | None = None) -> None:
    """A fine-tuned model's summary, per-sample frame and OpenUnlearning-layout results."""
    setup(threads)
    model, tokenizer, dev, _ = _load(model_dir, device, precision, frozen=True)
    reference = pd.read_csv(reference_csv) if reference_csv else None
    summary, samples = evaluate(model, tokenizer, load_study_data(data_dir), max_length=max_length,
                                max_new_tokens=eval_cfg["max_new_tokens"], batch_size=eval_cfg["batch_size"],
                                max_wrong_answers=eval_cfg["max_wrong_answers"], device=dev, reference=reference,
                                gradient_attack=eval_cfg["gradient_attack"] in (True, "finetuned"))
    write_csv(samples_csv, samples)
    write_json(openunlearning_json, openunlearning_eval(summary, samples))
    write_json(summary_json, summary)
