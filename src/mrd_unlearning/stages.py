"""Pipeline stages: what each Snakemake rule calls. Each takes paths and the config sections it
depends on (so Snakemake reruns exactly what a changed parameter touches), seeds and sizes its
threads, and writes its outputs atomically."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoTokenizer

from . import figures
from .data import synthetic
from .data.loader import load_study_data, write_manifest
from .evaluation import evaluate
from .ground_truth import required_updates
from .io import atomic_path, read_json, write_csv, write_json
from .metrics import mean_ci, steps_to_level
from .models import build_model, encode_qa, load_checkpoint, resolve_device, save_checkpoint, train_tokenizer
from .mrd import difficulty_drop, estimate, mrd_from_drop
from .training import finetune
from .unlearning import unlearn
from .validation import validation_table


def setup(threads: int, seed: int = 0) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _encode(tokenizer, rows, max_length):
    return [encode_qa(tokenizer, r["question"], r["answer"], max_length) for r in rows]


# --- data -------------------------------------------------------------------------------------

def prepare_data(out_dir: str, *, data_cfg: dict, seed: int) -> None:
    with atomic_path(out_dir) as tmp:
        synthetic.generate(tmp, seed=seed, forget_percent=data_cfg["forget_percent"],
                           retain_eval_size=data_cfg["retain_eval_size"], **data_cfg["synthetic"])
        write_manifest(tmp, root=".", forget_percent=data_cfg["forget_percent"])
        load_study_data(tmp)  # every check before anything trains on it


def build_tokenizer(data_dir: str, out_dir: str, *, vocab_size: int) -> None:
    data = load_study_data(data_dir)
    texts = []
    for rows in (data.full, data.holdout, data.forget_eval, data.retain_eval):
        for r in rows:
            texts += [r["question"], r["answer"], r.get("paraphrased_answer", ""), *r.get("perturbed_answer", [])]
    tokenizer = train_tokenizer(texts, vocab_size)
    with atomic_path(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)


# --- fine-tuning ------------------------------------------------------------------------------

def finetune_model(role: str, data_dir: str, tokenizer_dir: str, out_dir: str, *, model_cfg: dict,
                   finetune_cfg: dict, seed: int, device: str, threads: int) -> None:
    """role 'target' trains on `full`, role 'retain' on the retain split only; same recipe."""
    setup(threads, seed)
    data = load_study_data(data_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    rows = {"target": data.full, "retain": data.retain}[role]
    dev = resolve_device(device)
    model = build_model(tokenizer, seed=seed, hidden_size=model_cfg["hidden_size"], num_layers=model_cfg["num_layers"],
                        num_heads=model_cfg["num_heads"], intermediate_size=model_cfg["intermediate_size"],
                        max_length=model_cfg["max_length"]).to(dev)
    start = time.perf_counter()
    history = finetune(model, _encode(tokenizer, rows, model_cfg["max_length"]), lr=finetune_cfg["lr"],
                       weight_decay=finetune_cfg["weight_decay"], batch_size=finetune_cfg["batch_size"],
                       max_epochs=finetune_cfg["max_epochs"],
                       memorization_accuracy_target=finetune_cfg["memorization_accuracy"], seed=seed,
                       pad_id=tokenizer.pad_token_id, device=dev, desc=f"fine-tune {role}")
    with atomic_path(out_dir) as tmp:
        save_checkpoint(model, tokenizer, tmp)
        write_json(Path(tmp) / "finetune.json", {
            "role": role, "n_train": len(rows), "wall_s": time.perf_counter() - start,
            "parameters": sum(p.numel() for p in model.parameters()), "history": history,
            "reached_criterion": bool(history and history[-1]["answer_token_accuracy"] >= finetune_cfg["memorization_accuracy"]),
        })


# --- evaluation -------------------------------------------------------------------------------

def evaluate_model(model_dir: str, data_dir: str, summary_json: str, samples_csv: str, *, eval_cfg: dict,
                   max_length: int, device: str, threads: int, reference_csv: str | None = None) -> None:
    setup(threads)
    dev = resolve_device(device)
    model, tokenizer = load_checkpoint(model_dir, dev)
    reference = pd.read_csv(reference_csv) if reference_csv else None
    summary, samples = evaluate(model, tokenizer, load_study_data(data_dir), max_length=max_length,
                                max_new_tokens=eval_cfg["max_new_tokens"], batch_size=eval_cfg["batch_size"],
                                device=dev, reference=reference)
    write_csv(samples_csv, samples)
    write_json(summary_json, summary)


# --- MRD and its ground truth -----------------------------------------------------------------

def score_mrd(model_dir: str, data_dir: str, out_csv: str, out_json: str, *, mrd_cfg: dict, max_length: int,
              device: str, threads: int) -> None:
    setup(threads)
    dev = resolve_device(device)
    model, tokenizer = load_checkpoint(model_dir, dev)
    forget = load_study_data(data_dir).forget
    encoded = _encode(tokenizer, forget, max_length)
    start = time.perf_counter()
    result = estimate(model, encoded, K=mrd_cfg["K"], sigma=mrd_cfg["sigma"], sigma_grid=mrd_cfg["sigma_grid"],
                      positive_share=mrd_cfg["positive_share"], seed=mrd_cfg["seed"],
                      sigma_mode=mrd_cfg["sigma_mode"], batch_size=mrd_cfg["batch_size"],
                      pad_id=tokenizer.pad_token_id, device=dev)
    drop = difficulty_drop(result, mrd_cfg["statistic"], mrd_cfg["normalize"])
    write_csv(out_csv, pd.DataFrame({"sample_id": np.arange(len(forget)), "mrd": mrd_from_drop(drop, mrd_cfg["eps"]),
                                     "drop": drop, "loglik": result.loglik}))
    write_json(out_json, {"sigma": result.sigma, "positive_share": result.positive_share,
                          "sigma_search": result.searched, "K": mrd_cfg["K"], "wall_s": time.perf_counter() - start,
                          "n_samples": len(forget)})


def ground_truth(model_dir: str, data_dir: str, retain_samples_csv: str, out_csv: str, *, gt_cfg: dict,
                 unlearning_cfg: dict, max_length: int, device: str, threads: int, seed: int) -> None:
    setup(threads, seed)
    dev = resolve_device(device)
    model, tokenizer = load_checkpoint(model_dir, dev)
    forget = load_study_data(data_dir).forget
    reference = pd.read_csv(retain_samples_csv)
    level = reference[reference.split == "forget"].sort_values("sample_id").loglik.to_numpy()
    counts = required_updates(model, _encode(tokenizer, forget, max_length), level,
                              optimizer=unlearning_cfg["optimizer"], lr=unlearning_cfg["lr"],
                              max_steps=gt_cfg["max_steps"], pad_id=tokenizer.pad_token_id, device=dev)
    counts["retain_level"] = level
    write_csv(out_csv, counts)


def collect_scores(mrd_csv: str, counts_csv: str, data_dir: str, out_csv: str) -> None:
    """mrd/scores.csv: MRD, ground truth, cheap baseline scores and known factors per sample."""
    scores = pd.read_csv(mrd_csv).merge(pd.read_csv(counts_csv), on="sample_id")
    data = load_study_data(data_dir)
    scores["loss"] = -scores["loglik"]
    scores["answer_length"] = [len(r["answer"].split()) for r in data.forget]
    scores["retain_model_loss_oracle"] = -scores.pop("retain_level")
    factors = Path(data_dir) / "factors.csv"
    if factors.is_file():
        scores = scores.merge(pd.read_csv(factors), on="sample_id", how="left")
    write_csv(out_csv, scores)


# --- unlearning -------------------------------------------------------------------------------

def unlearn_run(model_dir: str, data_dir: str, out_dir: str, *, algorithm: str, sampler: str, seed: int,
                unlearning_cfg: dict, max_length: int, device: str, threads: int, mrd_csv: str | None = None) -> None:
    setup(threads, seed)
    dev = resolve_device(device)
    model, tokenizer = load_checkpoint(model_dir, dev)
    data = load_study_data(data_dir)
    drop = pd.read_csv(mrd_csv).sort_values("sample_id")["drop"].to_numpy() if mrd_csv else None
    curve, wall = unlearn(model, _encode(tokenizer, data.forget, max_length),
                          _encode(tokenizer, data.retain_eval, max_length), algorithm=algorithm, sampler=sampler,
                          drop=drop, steps=unlearning_cfg["steps"], batch_size=unlearning_cfg["batch_size"],
                          lr=unlearning_cfg["lr"], optimizer=unlearning_cfg["optimizer"], tau=unlearning_cfg.get("tau", 1.0),
                          seed=seed, log_every=unlearning_cfg["log_every"], pad_id=tokenizer.pad_token_id, device=dev)
    with atomic_path(out_dir) as tmp:
        save_checkpoint(model, tokenizer, tmp)
        write_csv(Path(tmp) / "curve.csv", curve)
        write_json(Path(tmp) / "run.json", {"algorithm": algorithm, "sampler": sampler, "seed": seed, "wall_s": wall})


# --- tables, figures, report ------------------------------------------------------------------

def unlearning_table(run_dirs: list[str], eval_jsons: list[str], retain_summary_json: str, out_csv: str) -> None:
    level = read_json(retain_summary_json)["forget_loglik"]
    rows = []
    for run_dir, eval_json in zip(run_dirs, eval_jsons):
        run, ev = read_json(Path(run_dir) / "run.json"), read_json(eval_json)
        curve = pd.read_csv(Path(run_dir) / "curve.csv")
        rows.append({**{k: run[k] for k in ("algorithm", "sampler", "seed")},
                     **{k: ev[k] for k in ("forget_quality", "model_utility", "forget_prob", "forget_rouge",
                                           "forget_truth_ratio", "mia_auc")},
                     "steps_to_forget": steps_to_level(curve.step, curve.forget_loglik, level),
                     "wall_s": run["wall_s"]})
    write_csv(out_csv, pd.DataFrame(rows).sort_values(["algorithm", "sampler", "seed"]))


COMPARED = ("forget_quality", "model_utility", "forget_prob", "forget_rouge", "forget_truth_ratio", "mia_auc",
            "steps_to_forget")


def comparison_table(unlearning_csv: str, out_csv: str) -> None:
    """Paired differences (sampler - uniform, same algorithm and seed), mean and 95% CI over seeds."""
    table = pd.read_csv(unlearning_csv)
    uniform = table[table.sampler == "uniform"].set_index(["algorithm", "seed"])
    rows = []
    for (algorithm, sampler), group in table[table.sampler != "uniform"].groupby(["algorithm", "sampler"]):
        paired = group.set_index(["algorithm", "seed"]).join(uniform, rsuffix="_uniform", how="inner")
        row = {"algorithm": algorithm, "sampler": sampler, "n_pairs": len(paired)}
        for metric in COMPARED:
            mean, low, high = mean_ci((paired[metric] - paired[f"{metric}_uniform"]).to_numpy())
            row.update({f"{metric}_diff": mean, f"{metric}_ci_low": low, f"{metric}_ci_high": high})
        rows.append(row)
    write_csv(out_csv, pd.DataFrame(rows, columns=None if rows else ["algorithm", "sampler", "n_pairs"]))


def make_figures(scores_csv: str, unlearning_csv: str, curve_dirs: list[str], out: dict[str, str]) -> None:
    figures.mrd_figure(pd.read_csv(scores_csv), out["mrd"])
    curves = pd.concat([pd.read_csv(Path(d) / "curve.csv").assign(**{k: v for k, v in read_json(Path(d) / "run.json").items()
                                                                    if k in ("algorithm", "sampler", "seed")})
                        for d in curve_dirs], ignore_index=True)
    figures.unlearning_figure(pd.read_csv(unlearning_csv), curves, out["unlearning"])


def mrd_validation(scores_csv: str, out_csv: str) -> None:
    write_csv(out_csv, validation_table(pd.read_csv(scores_csv)))
