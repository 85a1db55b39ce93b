"""Pipeline stages: what each Snakemake rule calls. Each takes paths and the config sections it
depends on (so Snakemake reruns exactly what a changed parameter touches), seeds and sizes its
threads, and writes its outputs atomically. Replicates share the data; everything a
model touches lives under the replicate's own folder, and the tables pool across them.

One module per rule group, loaded on first use: a job imports only what its stage needs (writing
the data folder loads no model library)."""
from __future__ import annotations

import importlib

# name -> the module of this package that defines it
_WHERE = {
    "setup": "common",
    "_load": "common",
    "_encode": "common",
    "prepare_data": "data",
    "_point_at": "data",
    "_prepare_tofu": "data",
    "check_lengths": "tokenizer",
    "build_tokenizer": "tokenizer",
    "convert_base_model": "finetune",
    "TINY_KEYS": "finetune",
    "_base_model": "finetune",
    "finetune_model": "finetune",
    "_finetune_process": "finetune",
    "evaluate_model": "evaluate",
    "_forget_on_model": "mrd",
    "_scorer": "mrd",
    "score_forget_set": "mrd",
    "mrd_variants": "mrd",
    "baseline_scores": "mrd",
    "ground_truth": "mrd",
    "idk_targets": "unlearn",
    "unlearning_steps": "unlearn",
    "unlearn_runs": "unlearn",
}
__all__ = sorted(n for n in _WHERE if not n.startswith("_"))


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
