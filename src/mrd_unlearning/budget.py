"""The unlearning budget T of an algorithm, from uniform runs only (`make budget`).

T must not be chosen by looking at the comparison it decides, so it comes from a pilot of the
uniform sampler alone: every replicate's target model x every unlearning seed, each run until the
forget set's mean likelihood reaches the retain model's level (at most `cap` updates), nothing
evaluated. T is the smallest multiple of 5 at least `margin` x the latest crossing step, so that
uniform runs reach the level on most seeds on other machines too; an algorithm that never gets
there within the cap is reported as such (its T is then a choice, not a measurement)."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from .config import study_config, study_data_configs
from .data.loader import load_study_data
from .io import read_json
from .metrics import level_crossing
from .unlearning import NEEDS_IDK, unlearn


def suggested_budget(crossings: list[float], margin: float = 1.15) -> int:
    """The smallest multiple of 5 at least `margin` x the latest crossing."""
    return 5 * math.ceil(margin * max(crossings) / 5 - 1e-9)


def pilot(study_dir: str | Path, cfg: dict, algorithms: list[str], *, cap: int, threads: int = 1) -> pd.DataFrame:
    """One row per (replicate, algorithm, seed): the interpolated step at which the uniform run's
    forget likelihood reached the retain model's level, or `cap` and censored."""
    from .stages import _encode, _load, idk_targets, setup  # the model libraries load only here

    study_dir, ul = Path(study_dir), cfg["unlearning"]
    data = load_study_data(study_dir / "data")
    rows = []
    for replicate in cfg["replicates"]:
        level = read_json(study_dir / f"eval/rep{replicate}/retain.json")["forget_loglik"]
        for algorithm in algorithms:
            for seed in ul["seeds"]:
                setup(threads, seed)
                model, tokenizer, dev, policy = _load(str(study_dir / f"models/rep{replicate}/target"), cfg["device"],
                                                      cfg["model"]["precision"])
                encode = lambda rows_: _encode(tokenizer, rows_, cfg["model"]["max_length"])  # noqa: E731
                idk = (idk_targets(tokenizer, data.forget, seed, cfg["model"]["max_length"])
                       if algorithm in NEEDS_IDK else None)
                curve, costs = unlearn(model, encode(data.forget), encode(data.retain), encode(data.retain_eval),
                                       algorithm=algorithm, sampler="uniform", drop=None, steps=1,
                                       batch_size=ul["batch_size"], lr=ul["lr"], optimizer=ul["optimizer"],
                                       tau=ul["tau"], seed=seed, log_every=ul["log_every"],
                                       grad_accumulation=ul["grad_accumulation"], pad_id=tokenizer.pad_token_id,
                                       device=dev, level=level, max_steps=cap, precision=policy, forget_idk=idk)
                crossing, censored = level_crossing(curve.step, curve.forget_loglik, level, cap)
                rows.append({"replicate": replicate, "algorithm": algorithm, "seed": seed, "crossing": crossing,
                             "censored": censored})
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame, margin: float = 1.15) -> dict[str, dict]:
    out = {}
    for algorithm, part in runs.groupby("algorithm", sort=False):
        reached = part[~part.censored.astype(bool)]
        out[algorithm] = {"runs": len(part), "reached": len(reached),
                          "latest_crossing": float(reached.crossing.max()) if len(reached) else None,
                          "budget": suggested_budget(list(reached.crossing), margin) if len(reached) else None}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Unlearning budgets from a pilot of uniform runs only.")
    ap.add_argument("--config", nargs="+", default=["config/config.yaml"],
                    help="the study's configuration file(s) (its fine-tuned models must exist)")
    ap.add_argument("--algorithms", nargs="+", required=True)
    ap.add_argument("--cap", type=int, default=200, help="updates at most per pilot run")
    ap.add_argument("--margin", type=float, default=1.15)
    ap.add_argument("--results", default="results", help="the folder holding results/<study>/")
    args = ap.parse_args(argv)
    cfg = study_config(args.config)
    for study in study_data_configs(cfg):
        runs = pilot(Path(args.results) / study, cfg, args.algorithms, cap=args.cap)
        print(runs.to_string(index=False))
        print(json.dumps({"study": study, "cap": args.cap, "margin": args.margin,
                          "algorithms": summarize(runs, args.margin)}))


if __name__ == "__main__":
    main()
