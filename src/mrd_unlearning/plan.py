"""The memory and cost plan of a study, before any compute (`make plan CONFIG=...`).

Per model job: the peak memory of one GPU (weights, gradients, optimizer state, NPO/KL's
reference, MRD's or the ground truth's copy of the weights, activations at the configured batch
and length, plus a fixed allowance for the CUDA context) and its GPU-hours. Training FLOPs are
6·N per token, forward passes 2·N per token, at `resources.mfu` of `resources.gpu_tflops`;
generation reads every weight once per new token, at `resources.mfu` of the memory bandwidth.
Counts are worst cases where the study stops early (every ground truth at its cap M, every run at
its level cap), so the plan is an upper bound of the work, not a forecast of it.

The architecture comes from the model's own config (the tiny model's keys, the SmolLM2 GGUF's
metadata, a local checkpoint folder or the hub cache), built on the meta device to count its
parameters exactly; offline, a model without a local config falls back to KNOWN_ARCHITECTURES.
With resources.gpu > 0 the workflow refuses, before any job runs, a study with a job that does
not fit (`refuse_unfit`)."""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import arm_seeds, study_config, study_data_configs
from .data import tofu
from .wording import counted

GB = 1e9
CUDA_CONTEXT_GB = 1.0  # the CUDA context, cuBLAS workspaces and the allocator's slack
# Offline fallback for the models the paper's configs name (their published config.json values).
LLAMA2_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
             "max_position_embeddings": 4096, "tie_word_embeddings": False}
PHI_1_5 = {"model_type": "phi", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
           "num_attention_heads": 32, "vocab_size": 51200, "max_position_embeddings": 2048,
           "tie_word_embeddings": False}
KNOWN_ARCHITECTURES = {"meta-llama/Llama-2-7b-chat-hf": LLAMA2_7B, "meta-llama/Llama-2-7b-hf": LLAMA2_7B,
                       "microsoft/phi-1_5": PHI_1_5}
TOFU_ROWS = {"full": 4000, "forget01": 40, "forget05": 200, "forget10": 400, "retain_eval": 400,
             "real_authors": 100, "world_facts": 117}
TOFU_WRONG_ANSWERS = 5


class PlanError(RuntimeError):
    """A model job whose planned memory does not fit its GPUs."""


@dataclass
class Architecture:
    parameters: int
    trainable: int  # all parameters, or the LoRA adapters'
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    kv_dim: int
    largest_layer: int  # parameters of one decoder layer (what FSDP all-gathers at a time)
    source: str


@dataclass
class JobPlan:
    rule: str
    variant: str  # e.g. the unlearning job's algorithm/sampler
    jobs: int
    gpus: int  # per job
    memory_gb: dict[str, float]  # per GPU, by component
    gpu_hours: float  # per job, all its GPUs together
    host_mem_mb: int = 0
    disk_gb: float = 0.0  # per job: the checkpoints it writes (the tables and logs are negligible)
    fits: bool = True
    peak_gb: float = field(init=False)

    def __post_init__(self):
        self.peak_gb = sum(self.memory_gb.values())

    @property
    def wall_minutes(self) -> float:
        return 60 * self.gpu_hours / self.gpus


def usable_gb(cfg: dict) -> float:
    """What a job may plan to use of one GPU: resources.gpu_mem_gb x resources.usable_fraction."""
    return cfg["resources"]["gpu_mem_gb"] * cfg["resources"]["usable_fraction"]


def _hf_config(model_cfg: dict):
    import transformers

    if model_cfg["source"] == "tiny":
        return transformers.LlamaConfig(
            vocab_size=model_cfg["vocab_size"], hidden_size=model_cfg["hidden_size"],
            num_hidden_layers=model_cfg["num_layers"], num_attention_heads=model_cfg["num_heads"],
            num_key_value_heads=model_cfg["num_heads"], intermediate_size=model_cfg["intermediate_size"],
            max_position_embeddings=model_cfg["max_length"], tie_word_embeddings=True), "the tiny model's keys"
    if model_cfg["source"] == "smollm2_gguf":
        from .models import smollm2_gguf_file

        gguf = smollm2_gguf_file()
        return transformers.AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name), f"{gguf.name} metadata"
    name = model_cfg["name_or_path"]
    try:  # a local folder or the hub cache; the plan never waits on the network
        return transformers.AutoConfig.from_pretrained(name, local_files_only=True), f"{name} config.json"
    except OSError:
        if name not in KNOWN_ARCHITECTURES:
            raise PlanError(f"the plan needs {name}'s config.json: give model.name_or_path as a local checkpoint "
                            f"folder, or cache it once online (known offline: {sorted(KNOWN_ARCHITECTURES)})") from None
        known = dict(KNOWN_ARCHITECTURES[name])
        return transformers.AutoConfig.for_model(known.pop("model_type"), **known), f"{name} (built-in table)"


def architecture(model_cfg: dict, vocab_size: int | None = None) -> Architecture:
    """Exact parameter counts from the model built on the meta device (no memory, no weights)."""
    import torch
    import transformers

    config, source = _hf_config({**model_cfg, "vocab_size": vocab_size})
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    parameters = sum(p.numel() for p in model.parameters())
    lora = model_cfg["lora"]
    trainable = parameters
    if lora["r"]:
        trainable = sum(lora["r"] * (m.in_features + m.out_features) for name, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in lora["target_modules"])
    layers = [m for name, m in model.named_modules() if name.endswith(".layers")][0]
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return Architecture(parameters=parameters, trainable=trainable, hidden=config.hidden_size,
                        intermediate=config.intermediate_size, layers=config.num_hidden_layers,
                        vocab=config.vocab_size, kv_dim=config.hidden_size // heads * kv_heads,
                        largest_layer=max(sum(p.numel() for p in layer.parameters()) for layer in layers),
                        source=source)


def data_sizes(data_cfg: dict) -> dict[str, int]:
    """Rows per split: the synthetic generator's and TOFU's from the configuration (TOFU's
    published split sizes), a local folder's counted in its files."""
    if data_cfg["source"] == "synthetic":
        syn = data_cfg["synthetic"]
        n_forget_people = max(1, round(syn["n_people"] * data_cfg["forget_percent"] / 100))
        full = syn["n_people"] * syn["attributes_per_person"]
        forget = n_forget_people * syn["attributes_per_person"]
        return {"full": full, "forget": forget, "retain": full - forget, "retain_eval": data_cfg["retain_eval_size"],
                "utility": 0, "wrong_answers": syn["n_wrong_answers"]}
    if data_cfg["source"] == "local":
        return _local_sizes(data_cfg)
    if data_cfg["source"] == "benchmark":  # the study's cut, made as the data stage makes it (cheap)
        from .data.benchmarks import benchmark_study

        roles = benchmark_study(data_cfg["benchmark"])[0]
        qa = "question" in roles["forget"][0]
        return {"full": len(roles["forget"]) + len(roles["retain"]), "forget": len(roles["forget"]),
                "retain": len(roles["retain"]),
                "retain_eval": min(data_cfg["retain_eval_size"] or len(roles["retain"]), len(roles["retain"])),
                "utility": 0, "wrong_answers": len(roles["forget"][0]["perturbed_answer"]) if qa else 0}
    cfg = data_cfg["tofu"]
    split = TOFU_ROWS[cfg["forget_split"]]
    forget = split if cfg.get("per_author") is None else tofu.n_authors(cfg["forget_split"]) * cfg["per_author"]
    retain = TOFU_ROWS["full"] - split if cfg["retain_authors"] is None else cfg["retain_authors"] * tofu.AUTHOR_QA
    utility = cfg["utility_eval_size"]
    return {"full": forget + retain, "forget": forget, "retain": retain,
            "retain_eval": data_cfg["retain_eval_size"] or TOFU_ROWS["retain_eval"],
            "utility": 2 * utility if utility else TOFU_ROWS["real_authors"] + TOFU_ROWS["world_facts"],
            "wrong_answers": TOFU_WRONG_ANSWERS}


def _local_sizes(data_cfg: dict) -> dict[str, int]:
    """A local folder's rows, counted (one JSON object per non-empty line), and the wrong answers
    of its first forget-evaluation row; a missing file is named by its config key."""
    from .config import ConfigError

    local = data_cfg["local"]
    root = Path(local["path"])
    rows: dict[str, int] = {}
    for role, name in local["splits"].items():
        if not name:
            continue
        path = root / name
        if not path.is_file():
            raise ConfigError(f"config key 'data.local.splits.{role}': no file {path}")
        with path.open(encoding="utf-8") as fh:
            rows[role] = sum(1 for line in fh if line.strip())
    with (root / local["splits"]["forget_eval"]).open(encoding="utf-8") as fh:
        first = json.loads(next(line for line in fh if line.strip()))
    cap = data_cfg["retain_eval_size"]
    return {"full": rows.get("full", rows["forget"] + rows["retain"]), "forget": rows["forget"],
            "retain": rows["retain"], "retain_eval": min(cap, rows["retain_eval"]) if cap else rows["retain_eval"],
            "utility": rows.get("real_authors", 0) + rows.get("world_facts", 0),
            "wrong_answers": len(first.get("perturbed_answer", []))}


class _Costs:
    """Memory (GB per GPU) and time (GPU-hours) of the pieces every job is made of."""

    def __init__(self, cfg: dict, arch: Architecture, on_gpu: bool):
        from .precision import bytes_per, resolve_precision

        policy = resolve_precision(cfg["model"]["precision"], "cuda" if on_gpu else "cpu")
        if on_gpu and cfg["model"]["precision"] == "auto":  # bf16 on every GPU the plan targets
            policy = resolve_precision("bf16-mixed", "cpu")
        self.policy, self.arch, self.cfg = policy, arch, cfg
        self.w, self.f = bytes_per(policy.weights), bytes_per(policy.frozen)
        self.c = 2 if policy.compute is not None else self.w  # activations' bytes
        self.length = cfg["model"]["max_length"]
        self.tokens = cfg["resources"]["mean_tokens"] or self.length / 2
        res = cfg["resources"]
        self.flops_per_s = res["gpu_tflops"] * 1e12 * res["mfu"]
        self.bytes_per_s = res["gpu_bandwidth_gbs"] * 1e9 * res["mfu"]

    def weights(self, frozen=False) -> float:
        return self.arch.parameters * (self.f if frozen else self.w) / GB

    def training_state(self, optimizer: str, shards: int = 1) -> dict[str, float]:
        t = self.arch.trainable * self.w / GB
        states = {"adamw": 2, "sgd": 0}[optimizer]
        return {"weights": self.weights() / shards, "gradients": t / shards, "optimizer": states * t / shards}

    def train_activations(self, batch: int) -> float:
        a = self.arch
        per_layer = batch * self.length * (9 * a.hidden + 4 * a.intermediate) * self.c
        if self.cfg["model"]["gradient_checkpointing"]:
            stored = a.layers * batch * self.length * a.hidden * self.c + per_layer
        else:
            stored = a.layers * per_layer
        logits = batch * self.length * a.vocab * (self.c + 2 * 4)  # logits, their float32 loss and its gradient
        return (stored + logits) / GB

    def score_activations(self, batch: int) -> float:
        """Forward only: a layer's activations at a time, the logits and MRD's float64 log-softmax."""
        a = self.arch
        per_layer = batch * self.length * (9 * a.hidden + 4 * a.intermediate) * self.c
        return (2 * per_layer + batch * self.length * a.vocab * (self.c + 2 * 8)) / GB

    def generation(self, batch: int, new_tokens: int) -> float:
        a = self.arch
        kv = batch * (self.length + new_tokens) * a.layers * 2 * a.kv_dim * self.c
        return (kv + batch * a.vocab * 4 * 2) / GB

    def hours(self, train_tokens: float = 0, forward_tokens: float = 0, decode_steps: float = 0,
              frozen=True) -> float:
        n = self.arch.parameters
        flops = 6 * n * train_tokens + 2 * n * forward_tokens
        decode_bytes = decode_steps * n * (self.f if frozen else self.w)
        return (flops / self.flops_per_s + decode_bytes / self.bytes_per_s) / 3600

    def evaluation_hours(self, sizes: dict, frozen=True) -> float:
        """One evaluation (evaluation.py): every forget / retain / utility question generated,
        and scored with its paraphrase and wrong answers."""
        ev = self.cfg["evaluation"]
        wrong = min(sizes["wrong_answers"], ev["max_wrong_answers"] or sizes["wrong_answers"])
        questions = sizes["forget"] + sizes["retain_eval"] + sizes["utility"]
        scored = questions * (2 + wrong) * self.tokens
        decode = math.ceil(questions / ev["batch_size"]) * new_tokens(self.cfg)
        return self.hours(forward_tokens=scored, decode_steps=decode, frozen=frozen)


def new_tokens(cfg: dict) -> int:
    """The generation length the plan counts: evaluation.max_new_tokens, or with 'auto' (the longest
    reference answer of the evaluated rows, known only once the data are tokenised) half of
    model.max_length, the plan's convention for a sample's length (resources.mean_tokens)."""
    n = cfg["evaluation"]["max_new_tokens"]
    return cfg["model"]["max_length"] // 2 if n == "auto" else int(n)


def _job(rule, variant, jobs, gpus, memory, hours, host_mb, disk_gb: float = 0.0) -> JobPlan:
    return JobPlan(rule, variant, jobs, gpus, {k: round(v, 3) for k, v in memory.items() if v}, hours, host_mb,
                   round(disk_gb, 3))


def study_jobs(cfg: dict, data_cfg: dict, arch: Architecture, on_gpu: bool = True) -> list[JobPlan]:
    """Every model job of one study (one forget split), with its memory and GPU-hours."""
    from .stages import unlearning_steps
    from .unlearning import NEEDS_IDK, NEEDS_REFERENCE, NEEDS_RETAIN

    costs = _Costs(cfg, arch, on_gpu)
    sizes = data_sizes(data_cfg)
    reps = len(cfg["replicates"])
    ctx = {"cuda context": CUDA_CONTEXT_GB if on_gpu else 0.0}
    ft, mrd, ul, gt, ev = cfg["finetune"], cfg["mrd"], cfg["unlearning"], cfg["ground_truth"], cfg["evaluation"]
    host = max(cfg["resources"]["mem_mb"], int(1000 * (costs.weights() * 1.25 + 4)))  # a host copy while loading
    lora = bool(cfg["model"]["lora"]["r"])
    jobs = []

    processes = ft["processes"]
    shards = processes if processes > 1 and ft["strategy"] == "fsdp" else 1
    memory = {**costs.training_state("adamw", shards), "activations": costs.train_activations(ft["batch_size"]), **ctx}
    if shards > 1:  # two layers gathered at a time: the one computing and the one prefetched
        memory["fsdp gathered layers"] = 2 * arch.largest_layer * costs.w / GB
    epochs = ft["max_epochs"]
    train_rows = {"target": sizes["full"], "retain": sizes["retain"]}
    for role, rows in train_rows.items():
        hours = costs.hours(train_tokens=epochs * rows * costs.tokens, forward_tokens=epochs * rows * costs.tokens,
                            frozen=False)
        jobs.append(_job("finetune", role, reps, cfg["resources"]["gpu"] * processes, memory, hours,
                         host * processes, disk_gb=costs.weights()))  # the fine-tuned checkpoint
    eval_memory = {"weights": costs.weights(frozen=True), "activations": max(
        costs.score_activations(ev["batch_size"]), costs.generation(ev["batch_size"], new_tokens(cfg))), **ctx}
    jobs.append(_job("evaluate_finetuned", "target+retain", 2 * reps, 1, eval_memory, costs.evaluation_hours(sizes),
                     host))

    grid = len(mrd["sigma_grid"]) if mrd["sigma"] == "auto" else 1
    score = {"weights": costs.weights(), "MRD's copy": arch.trainable * costs.w / GB,
             "activations": costs.score_activations(mrd["batch_size"]), **ctx}
    passes = grid * mrd["K"] + 1
    jobs.append(_job("mrd", "", reps, 1, score, costs.hours(forward_tokens=passes * sizes["forget"] * costs.tokens),
                     host))
    study = mrd["validation"]
    variant_passes = passes + grid * max([mrd["K"], *study["K_grid"]])  # the retest seed's and the largest K's
    if study["sigma_sweep"]:
        variant_passes += len(mrd["sigma_grid"]) * mrd["K"]
    variant_reps = 1 if study["replicates"] == "first" else reps
    jobs.append(_job("mrd_variants", "", variant_reps, 1, score,
                     costs.hours(forward_tokens=variant_passes * sizes["forget"] * costs.tokens), host))
    jobs.append(_job("baselines", "", reps, 1,
                     {"weights": costs.weights(), "gradients": arch.trainable * costs.w / GB,
                      "activations": costs.train_activations(1), **ctx},
                     costs.hours(train_tokens=sizes["forget"] * costs.tokens), host))

    n_truth = min(sizes["forget"], gt["max_samples"] or sizes["forget"])
    for truth, optimizer in (("update_count", ul["optimizer"]), ("update_count_sgd", "sgd")):
        on_device = gt["reset_copy"] == "device"
        memory = {**costs.training_state(optimizer), "reset copy": costs.weights() if on_device else 0.0,
                  "activations": costs.train_activations(1), **ctx}
        steps = n_truth * gt["max_steps"]
        jobs.append(_job("ground_truth", truth, reps, 1, memory,
                         costs.hours(train_tokens=steps * costs.tokens, forward_tokens=steps * costs.tokens,
                                     frozen=False), host + (0 if on_device else int(1000 * costs.weights()))))

    attacks = cfg["robustness"]
    attack_hours = 0.0  # per unlearned model, and once per replicate on the controls
    if attacks["enabled"]:
        relearning, budgets = attacks["relearning"], attacks["relearning"]["steps"]
        attack_hours = costs.hours(  # the folds' relearning, each scored at every budget, and each rounding
            train_tokens=relearning["folds"] * max(budgets) * relearning["batch_size"] * costs.tokens,
            forward_tokens=(len(budgets) + len(attacks["quantization"]["bits"]) + 1) * sizes["forget"] * costs.tokens,
            frozen=False)
        jobs.append(_job("attack_controls", "", reps, 1,
                         {**costs.training_state(relearning["optimizer"]),
                          "activations": costs.train_activations(relearning["batch_size"]), **ctx},
                         attack_hours, host))

    per_update = ul["batch_size"] * ul["grad_accumulation"]
    for algorithm in ul["algorithms"]:
        steps = unlearning_steps(ul, algorithm, sizes["forget"])
        cap = max(steps, math.ceil(ul["level_cap"] * steps))
        streams = 1 + (algorithm in NEEDS_RETAIN) + (algorithm in NEEDS_IDK)  # batches per micro-step
        for sampler in ul["samplers"]:
            memory = {**costs.training_state(ul["optimizer"]),
                      "reference": costs.weights(frozen=True) if algorithm in NEEDS_REFERENCE and not lora else 0.0,
                      "MRD's copy": arch.trainable * costs.w / GB if sampler == "mrd_refresh" else 0.0,
                      "activations": max(streams * costs.train_activations(ul["batch_size"]),
                                         costs.generation(ev["batch_size"], new_tokens(cfg))), **ctx}
            curve = (cap // ul["log_every"] + 2) * (sizes["forget"] + sizes["retain_eval"]) * costs.tokens
            refresh = (cap // ul["refresh_every"]) * (mrd["K"] + 1) * sizes["forget"] * costs.tokens \
                if sampler == "mrd_refresh" else 0
            per_seed = costs.hours(
                train_tokens=cap * per_update * streams * costs.tokens,
                forward_tokens=cap * per_update * costs.tokens * (algorithm in NEEDS_REFERENCE) + curve + refresh,
                frozen=False) + 2 * costs.evaluation_hours(sizes, frozen=False)
            seeds = len(arm_seeds(cfg, algorithm, sampler))
            kept = {"none": 0, "first_seed": 1, "all": seeds}[ul["keep_models"]]
            saved = kept * (arch.trainable * costs.w / GB if lora else costs.weights())  # LoRA: the adapters
            attacked = len(ul["seeds"]) * attack_hours  # C4's extra seeds are not attacked
            jobs.append(_job("unlearn", f"{algorithm}/{sampler}", reps, 1, memory, seeds * per_seed + attacked, host,
                             disk_gb=saved))

    for job in jobs:
        job.fits = job.peak_gb <= usable_gb(cfg)
    return jobs


def study_plan(cfg: dict, on_gpu: bool | None = None, arch: Architecture | None = None) -> dict[str, list[JobPlan]]:
    """Study name -> its jobs. `on_gpu` (default: resources.gpu > 0) plans GPU memory with the
    precision policy's CUDA dtypes."""
    on_gpu = cfg["resources"]["gpu"] > 0 if on_gpu is None else on_gpu
    arch = arch or architecture(cfg["model"], cfg["tokenizer"]["vocab_size"])
    return {study: study_jobs(cfg, data_cfg, arch, on_gpu) for study, data_cfg in study_data_configs(cfg).items()}


def job_resources(plan: dict[str, list[JobPlan]], study: str, rule: str, variant: str = "") -> dict[str, int]:
    """A scheduler's resources for one job: host memory, and a time limit of twice the planned
    wall time plus 15 minutes (for loading and writing weights)."""
    job = next(j for j in plan[study] if j.rule == rule and j.variant == variant)
    return {"mem_mb": job.host_mem_mb, "runtime": math.ceil(2 * job.wall_minutes + 15)}


TRAINING_RULES = ("finetune", "ground_truth", "unlearn")


def remedies(cfg: dict, job: JobPlan) -> list[str]:
    """What would make a job that does not fit its GPU fit, most effective first."""
    found = []
    if job.rule == "finetune":
        found.append("finetune.strategy fsdp with more finetune.processes (GPUs) shards weights, gradients and AdamW "
                     "state")
    if job.rule in TRAINING_RULES:
        found += ["model.lora.r > 0 (LoRA) trains adapters only: no full gradients or AdamW state",
                  "model.gradient_checkpointing: true, or smaller batch sizes, cut the activations"]
    else:
        found.append("smaller mrd.batch_size / evaluation.batch_size, or model.precision bf16, cut what scoring holds")
    found.append(f"GPUs with more memory: resources.gpu_mem_gb (now {cfg['resources']['gpu_mem_gb']:g})")
    return found


def refuse_unfit(cfg: dict, plan: dict[str, list[JobPlan]]) -> None:
    """Raise, naming every job that does not fit and what would make it fit."""
    unfit = [(study, job) for study, jobs in plan.items() for job in jobs if not job.fits]
    if not unfit:
        return
    lines = [f"  {study}: {job.rule} {job.variant} needs {job.peak_gb:.1f} GB per GPU "
             f"({', '.join(f'{k} {v:.1f}' for k, v in job.memory_gb.items())})" for study, job in unfit]
    advice = list(dict.fromkeys(a for _, job in unfit for a in remedies(cfg, job)))
    raise PlanError(f"the memory plan does not fit {usable_gb(cfg):.1f} GB per GPU (resources.gpu_mem_gb x "
                    f"resources.usable_fraction); refused before any job runs:\n" + "\n".join(lines)
                    + "\nTo fit:\n" + "\n".join(f"  - {a}" for a in advice)
                    + "\n(`make plan CONFIG=...` prints the whole plan.)")


def summary(cfg: dict, plan: dict[str, list[JobPlan]]) -> dict:
    every = [job for jobs in plan.values() for job in jobs]
    return {"gpu_hours": round(sum(j.gpu_hours * j.jobs for j in every), 3),
            "max_gpu_mem_gb": round(max(j.peak_gb for j in every), 2),
            "fits": all(j.fits for j in every), "gpu_mem_gb": cfg["resources"]["gpu_mem_gb"],
            "usable_gb": round(usable_gb(cfg), 2),
            "jobs": sum(j.jobs for j in every), "studies": list(plan),
            "disk_gb": round(sum(j.disk_gb * j.jobs for j in every), 2)}


def render(cfg: dict, plan: dict[str, list[JobPlan]], arch: Architecture) -> str:
    res = cfg["resources"]
    lines = [f"Model: {arch.parameters / 1e9:.3f}B parameters ({arch.trainable / 1e9:.3f}B trained), from {arch.source}; "
             f"precision {cfg['model']['precision']}; GPUs of {res['gpu_mem_gb']:g} GB ({res['usable_fraction']:.0%} "
             f"usable), {res['gpu_tflops']:g} TFLOP/s and {res['gpu_bandwidth_gbs']:g} GB/s at {res['mfu']:.0%} "
             f"utilisation; {cfg['resources']['mean_tokens'] or cfg['model']['max_length'] / 2:g} tokens per sample."]
    for study, jobs in plan.items():
        lines += ["", f"## {study}", "",
                  "| rule | job | jobs | GPUs/job | peak GB/GPU | of which | fits | GPU-h/job | GPU-h | disk GB |",
                  "|---|---|---:|---:|---:|---|---|---:|---:|---:|"]
        for j in jobs:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in j.memory_gb.items())
            lines.append(f"| {j.rule} | {j.variant} | {j.jobs} | {j.gpus} | {j.peak_gb:.2f} | {parts} | "
                         f"{'yes' if j.fits else 'NO'} | {j.gpu_hours:.3f} | {j.gpu_hours * j.jobs:.2f} | "
                         f"{j.disk_gb * j.jobs:.2f} |")
        lines.append(f"| **study** | | {sum(j.jobs for j in jobs)} | | {max(j.peak_gb for j in jobs):.2f} | | "
                     f"{'yes' if all(j.fits for j in jobs) else 'NO'} | | {sum(j.gpu_hours * j.jobs for j in jobs):.2f} | "
                     f"{sum(j.disk_gb * j.jobs for j in jobs):.2f} |")
        unfit = [j for j in jobs if not j.fits]
        if unfit:
            lines += ["", f"Jobs that do not fit {usable_gb(cfg):.1f} GB per GPU, and what would make them fit:"]
            lines += [f"- {j.rule} {j.variant}".rstrip() + f" ({j.peak_gb:.1f} GB): " + "; ".join(remedies(cfg, j))
                      for j in unfit]
    return "\n".join(lines)


def total_line(summary: dict) -> str:
    """The grand total, the line to read first."""
    return (f"Total: {summary['jobs']} model jobs in {counted(len(summary['studies']), 'study', 'studies')}, "
            f"{summary['gpu_hours']:.2f} GPU-hours, peak {summary['max_gpu_mem_gb']:.2f} GB per GPU of "
            f"{summary['usable_gb']:.2f} usable ({'fits' if summary['fits'] else 'does NOT fit: see the remedies above'}), "
            f"{summary['disk_gb']:.2f} GB of checkpoints on disk")


def measured_seconds(results_dir: str | Path) -> dict[str, float] | None:
    """Rule -> mean wall seconds per job, from a finished run's benchmark files (None without)."""
    from .timing import benchmark_table

    try:
        table = benchmark_table(results_dir)
    except FileNotFoundError:
        return None
    return {r.rule: r.total_s / r.jobs for r in table.itertuples() if r.rule != "total"}


def render_cpu(cfg: dict, plan: dict[str, list[JobPlan]], results: str | Path = "results") -> tuple[str, dict]:
    """A CPU study's plan (resources.gpu 0): each model job's memory as host RAM, and its time in
    core-hours as the study's last run measured it (a CPU's speed is not modelled: the GPU plan's
    FLOP rates say nothing about it). Gives the table and the totals."""
    threads = cfg["threads"]
    lines, core_hours, measured_any = [f"CPU study (resources.gpu 0): RAM per job from the plan's memory model; "
                                       f"time in core-hours ({threads} thread(s) per job) as the last run of the "
                                       f"study measured it (results/<study>/benchmarks)."], 0.0, False
    for study, jobs in plan.items():
        seconds = measured_seconds(Path(results) / study)
        lines += ["", f"## {study}", "", "| rule | job | jobs | cores/job | RAM GB/job | of which | measured s/job | "
                  "core-hours | disk GB |", "|---|---|---:|---:|---:|---|---:|---:|---:|"]
        for j in jobs:
            parts = ", ".join(f"{k} {v:.3g}" for k, v in j.memory_gb.items())
            s = (seconds or {}).get(j.rule)
            hours = None if s is None else j.jobs * s * threads / 3600
            core_hours += hours or 0.0
            measured_any |= hours is not None
            lines.append(f"| {j.rule} | {j.variant} | {j.jobs} | {threads} | {j.peak_gb:.3g} | {parts} | "
                         f"{'not run yet' if s is None else f'{s:.0f}'} | {'' if hours is None else f'{hours:.2f}'} | "
                         f"{j.disk_gb * j.jobs:.2f} |")
    every = [j for jobs in plan.values() for j in jobs]
    totals = {"cpu": True, "jobs": sum(j.jobs for j in every), "studies": list(plan),
              "max_ram_gb": round(max(j.peak_gb for j in every), 4),
              "core_hours": round(core_hours, 3) if measured_any else None,
              "disk_gb": round(sum(j.disk_gb * j.jobs for j in every), 2)}
    return "\n".join(lines), totals


def cpu_total_line(totals: dict) -> str:
    """A CPU study's grand total, the line to read first."""
    time = (f"{totals['core_hours']:.2f} core-hours in the last run" if totals["core_hours"] is not None
            else "no run measured yet (run the study once, or plan a GPU run with resources.gpu > 0)")
    return (f"Total: {totals['jobs']} model jobs in {counted(len(totals['studies']), 'study', 'studies')} on CPUs, "
            f"{time}, peak {totals['max_ram_gb']:.3g} GB of RAM per job, {totals['disk_gb']:.2f} GB of checkpoints "
            "on disk")


def main(argv: list[str] | None = None) -> int:
    """make plan: a bad configuration or unreadable data is one line on stderr, exit status 2."""
    from .config import ConfigError
    from .data.loader import DataError

    ap = argparse.ArgumentParser(description="The memory and cost plan of a study (no compute).")
    ap.add_argument("--config", nargs="+", default=["config/config.yaml"],
                    help="the study's configuration file(s), later ones merged over earlier ones")
    ap.add_argument("--simulations", type=int, default=40,
                    help="simulated studies per point of each claim's power curve (0: no power section)")
    args = ap.parse_args(argv)
    try:
        _plan(args)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _plan(args) -> None:
    cfg = study_config(args.config)
    arch = architecture(cfg["model"], cfg["tokenizer"]["vocab_size"])
    on_gpu = cfg["resources"]["gpu"] > 0
    plan = study_plan(cfg, on_gpu=on_gpu, arch=arch)
    if on_gpu:
        print(render(cfg, plan, arch))
    else:
        table, cpu_totals = render_cpu(cfg, plan)
        print(f"Model: {arch.parameters / 1e9:.3f}B parameters ({arch.trainable / 1e9:.3f}B trained), from "
              f"{arch.source}; precision {cfg['model']['precision']}.\n" + table)
    power = {}
    if args.simulations > 0:
        for study, data_cfg in study_data_configs(cfg).items():
            section, power[study] = power_section(cfg, study, data_cfg, simulations=args.simulations)
            print(section, flush=True)
    totals = summary(cfg, plan) if on_gpu else cpu_totals
    print("\n" + (total_line(totals) if on_gpu else cpu_total_line(totals)))
    print(json.dumps({**totals, "power": power}))


def power_section(cfg: dict, study: str, data_cfg: dict, *, simulations: int,
                  results: str | Path = "results") -> tuple[str, dict]:
    """The power of a study's design before it runs (`calibration.power_plan`), with variance
    components from a previous run's tables under `results/<study>` where they exist."""
    import pandas as pd

    from . import calibration
    from .claims import completeness_metric, primary_of_runs
    from .snapshot import UNREACHABLE

    tables = Path(results) / study / "tables"
    files = {"scores": Path(results) / study / "mrd" / "scores.csv", "runs": tables / "unlearning.csv",
             "comparison": tables / "comparison.csv", "validation": tables / "mrd_validation.csv"}
    previous = None
    if all(f.is_file() for f in files.values()):
        runs = pd.read_csv(files["runs"])
        completeness = completeness_metric(runs)
        previous = calibration.design_from_study(
            pd.read_csv(files["scores"]), runs, pd.read_csv(files["comparison"], dtype={"replicate": str}),
            pd.read_csv(files["validation"], dtype={"replicate": str}), completeness,
            primary_of_runs(cfg["statistics"], runs, completeness))
    design = calibration.design_from_config(cfg, data_cfg, previous)
    if design is None:
        return f"\n## Power of {study}\n\nA local folder's groups are in its files: run the study once, then " \
               "`make calibration` measures its design.", {}
    table = calibration.power_plan(design, cfg["statistics"], simulations=simulations, seed=cfg["seed"])
    detectable = {r.claim: (None if not math.isfinite(r.mde) else round(float(r.mde), 4)) for r in table.itertuples()}
    unit = None
    if design.weighted and design.algorithms:
        measured = tables / "c4_unit.csv"
        share = pd.read_csv(measured).iloc[0][["run_share", "run_share_ci_low", "run_share_ci_high"]].to_dict() \
            if previous is not None and measured.is_file() else None
        unit = calibration.c4_unit(design, cfg["statistics"], share, seed=cfg["seed"])
        detectable["C4 unit"] = "pair" if bool(unit.chosen.iloc[0]) else "pair (groups would qualify)"
    text = calibration.render_power_plan(study, design, table, cfg["statistics"], unit)
    if design.primary:  # C4's declared primary comparison: its power and the seeds it needs
        primary = calibration.primary_plan(design, cfg["statistics"], simulations=max(simulations, 200),
                                           seed=cfg["seed"])
        text += "\n" + calibration.render_primary_plan(design, primary, cfg["statistics"])
        for r in primary.itertuples():
            detectable[f"{r.claim} primary power"] = round(float(r.power), 3)
            detectable[f"{r.claim} primary seeds needed"] = None if pd.isna(r.seeds_needed) else int(r.seeds_needed)
            multiple = float(r.detectable_multiple)  # inf: beyond the plan's grid; NaN: no effect of any size
            detectable[f"{r.claim} primary detectable"] = (round(multiple, 2) if math.isfinite(multiple) else
                                                           None if math.isinf(multiple) else UNREACHABLE)
    return text, detectable


if __name__ == "__main__":
    sys.exit(main())
