"""Where a study's time and memory went: Snakemake's per-job benchmark files, summarised per rule.

    python -m mrd_unlearning.timing results/default          # or: make timing CONFIG=config/x.yaml
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from .config import study_config, study_data_configs


def benchmark_table(results_dir: str | Path) -> pd.DataFrame:
    """One row per rule: jobs, total and longest wall time (s), peak resident memory (MB)."""
    root = Path(results_dir) / "benchmarks"
    files = sorted(root.rglob("*.tsv"))
    if not files:
        raise FileNotFoundError(f"no benchmark files under {root}: has the study run?")
    rows = []
    for path in files:
        bench = pd.read_csv(path, sep="\t").iloc[-1]  # the latest run of the job
        rule = path.relative_to(root).parts[0].removesuffix(".tsv")
        rows.append({"rule": rule, "s": float(bench.s), "max_rss": pd.to_numeric(bench.max_rss, errors="coerce")})
    jobs = pd.DataFrame(rows)
    table = jobs.groupby("rule", sort=False).agg(jobs=("s", "size"), total_s=("s", "sum"), max_s=("s", "max"),
                                                 max_rss=("max_rss", "max")).reset_index()
    table = table.sort_values("total_s", ascending=False)
    total = pd.DataFrame([{"rule": "total", "jobs": int(table.jobs.sum()), "total_s": table.total_s.sum(),
                           "max_s": table.max_s.max(), "max_rss": table.max_rss.max()}])
    return pd.concat([table, total], ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Wall time and peak memory per rule, from a study's benchmarks.")
    parser.add_argument("results", nargs="*", help="results folders (results/<name>)")
    parser.add_argument("--config", nargs="+", help="a study's configuration file(s): its results folders")
    args = parser.parse_args(argv)
    folders = list(args.results)
    if args.config:
        cfg = study_config(args.config)
        folders += [f"results/{study}" for study in study_data_configs(cfg)]
    if not folders:
        parser.error("name a results folder or --config")
    for folder in folders:
        table = benchmark_table(folder)
        print(f"{folder}: job time per rule (total_s is job-seconds; jobs run side by side)")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        print("max_rss: peak resident memory of one job, MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
