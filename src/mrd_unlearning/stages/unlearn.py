"""Rule unlearn: every seed of one (algorithm, sampler) on one replicate's target model, each
evaluated in the same process after the budget and at equal forgetting."""
from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd

from ..data.loader import DataError, load_study_data
from ..difficulty import LEARNING_EVENTS, difficulty_table, harder_when_higher
from ..evaluation import evaluate, openunlearning_eval
from ..io import atomic_path, read_json, write_csv, write_json
from ..metrics import forgetting_auc, level_crossing, progress_at
from ..models import encode_qa, save_checkpoint, with_lora
from ..mrd import Estimator
from ..robustness import attack_study
from ..sampling import drive_by, parse_arm
from ..unlearning import NEEDS_IDK, NEEDS_REFERENCE, idk_answers, unlearn
from .common import _encode, _load, setup


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
                 mrd_csv: str | None = None, mrd_json: str | None = None, baselines_csv: str | None = None,
                 robustness_cfg: dict | None = None, attack_seeds: list[int] | None = None) -> None:
    """Every seed of one (algorithm, sampler) on one replicate's target model, each evaluated in
    the same process (no checkpoint written and read back) after the budget T and at equal
    forgetting: when the forget set's mean likelihood reaches the retain model's level, or at the
    cap. Writes <out_dir>/seed<k>/{run.json, curve.csv, eval_budget_samples.csv,
    eval_level_samples.csv} and, with `robustness_cfg` enabled, attacks_budget.csv: the attacks on
    the model after the budget (`robustness.attack_study`; the weights are restored before
    unlearning goes on, so the run's curve is the same with or without them), on the seeds in
    `attack_seeds` (default all: C4's extra primary seeds are not attacked, so every arm has the
    same attacked runs). `mrd_json` (the estimator and its chosen sigma) only for the sampler
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
    attacking = bool((robustness_cfg or {}).get("enabled"))
    attacks: dict[int, pd.DataFrame] = {}
    attack_seconds: dict[int, float] = {}
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
                if name == "budget":
                    if keep:  # the unlearned model after the budget, to share
                        save_checkpoint(model, tokenizer, Path(tmp) / f"seed{seed}" / "model")
                    if attacking and (attack_seeds is None or seed in attack_seeds):
                        started = time.perf_counter()
                        attacks[seed] = attack_study(model, tokenizer, data, robustness_cfg, eval_cfg,
                                                     lr=unlearning_cfg["lr"], device=dev, max_length=max_length,
                                                     precision=policy)
                        attack_seconds[seed] = time.perf_counter() - started
                for earlier in evaluations.values():  # the budget and the level can be the same step
                    if earlier[0] == step:
                        evaluations[name] = earlier
                        return
                with policy.autocast():
                    summary, samples = evaluate(model, tokenizer, data, max_length=max_length, device=dev,
                                                max_new_tokens=eval_cfg["max_new_tokens"],
                                                batch_size=eval_cfg["batch_size"],
                                                max_wrong_answers=eval_cfg["max_wrong_answers"], reference=reference,
                                                gradient_attack=eval_cfg["gradient_attack"] is True)
                evaluations[name] = (step, summary, samples)

            curve, costs = unlearn(model, encode(data.forget), encode(data.retain), encode(data.retain_eval),
                                   algorithm=algorithm, sampler=base_sampler, drop=drop, steps=steps,
                                   batch_size=unlearning_cfg["batch_size"], lr=unlearning_cfg["lr"],
                                   optimizer=unlearning_cfg["optimizer"], tau=unlearning_cfg.get("tau", 1.0),
                                   seed=seed, log_every=unlearning_cfg["log_every"],
                                   level_every=unlearning_cfg.get("level_every"),
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
            if seed in attacks:
                write_csv(folder / "attacks_budget.csv", attacks[seed])
                run["attack_s"] = round(attack_seconds[seed], 2)
            write_json(folder / "run.json", run)
