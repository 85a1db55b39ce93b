"""Proof that a change is neutral: the smoke study (or another configuration) run at a base commit
and at the work tree, on this machine, and every output compared.

    python -m mrd_unlearning.neutral --base main          # make neutral BASE=main

Each side runs in a scratch folder of its own (the base from `git archive`, the work tree from
its tracked and untracked, not ignored, files), with its own package first on PYTHONPATH and
every job in a process of its own. Tables are compared to the last bit, JSON files key by key,
both without their timings; other files byte for byte; what only ran on one side is listed. The
run records, logs and benchmark files are left out: they describe the runs, not the results.
Exit status 0: no difference; 1: differences (listed); 2: it could not run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

# What differs from run to run without the results differing.
TIMING = frozenset({"wall_s", "refresh_s", "eval_s", "wall_total_s", "attack_s", "seconds"})
NOT_RESULTS = ("logs/", "benchmarks/", "run.json")


def _json_object(path: Path) -> dict | None:
    """The file's JSON object; None for anything else (JSON lines, arrays): compared byte for byte."""
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def difference(first: Path, second: Path, name: str) -> str | None:
    """How file `name` differs between two runs' folders (None: the same, timings aside)."""
    a_path, b_path = Path(first) / name, Path(second) / name
    if name.endswith(".csv"):
        a, b = (pd.read_csv(p) for p in (a_path, b_path))
        a, b = (t.drop(columns=list(TIMING), errors="ignore") for t in (a, b))
        try:
            pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
        except AssertionError as differ:
            return str(differ).strip().splitlines()[0] if str(differ).strip() else f"{name}: differs"
        return None
    documents = [_json_object(p) for p in (a_path, b_path)] if name.endswith(".json") else [None]
    if None not in documents:
        a, b = ({k: v for k, v in d.items() if k not in TIMING} for d in documents)
        if a == b:
            return None
        keys = sorted(k for k in {*a, *b} if a.get(k) != b.get(k))
        return f"{name}: keys differ: {', '.join(keys)}"
    return None if a_path.read_bytes() == b_path.read_bytes() else f"{name}: bytes differ"


def compare(first: Path, second: Path) -> tuple[int, list[str]]:
    """Every result file of two runs' results folders: (files compared, differences)."""
    def files(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in Path(root).rglob("*")
                if p.is_file() and not p.relative_to(root).as_posix().startswith(NOT_RESULTS)}

    a, b = files(first), files(second)
    differences = [f"{name}: only in the base run" for name in sorted(a - b)]
    differences += [f"{name}: only in the work tree's run" for name in sorted(b - a)]
    for name in sorted(a & b):
        found = difference(first, second, name)
        if found:
            differences.append(found)
    return len(a & b), differences


def _git(root: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, **kw)


def checkouts(root: Path, base: str, folder: Path) -> tuple[Path, Path]:
    """folder/base (the commit `base`) and folder/work (the work tree as it is now)."""
    commit = _git(root, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}", text=True)
    if commit.returncode != 0:
        raise ValueError(f"--base {base}: not a commit of {root}")
    base_dir, work_dir = folder / "base", folder / "work"
    base_dir.mkdir(parents=True)
    archive = _git(root, "archive", commit.stdout.strip())
    subprocess.run(["tar", "-x", "-C", str(base_dir)], input=archive.stdout, check=True)
    listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", text=True).stdout
    for name in filter(None, listed.split("\0")):
        source = root / name
        if source.is_file():
            (work_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work_dir / name)
    return base_dir, work_dir


def run_side(side: Path, config: str, cores: int, targets: list[str]) -> float:
    """The study in one checkout, with its own package and each job in its own process."""
    env = {k: v for k, v in os.environ.items() if k != "MRD_WARM_SOCKET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(side / "src"), env.get("PYTHONPATH")]))
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", config, "--cores", str(cores),
                           "--show-failed-logs", *targets], cwd=side, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-20:]
        raise RuntimeError(f"{side.name}: the study failed:\n" + "\n".join(tail))
    return time.time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare the work tree with (e.g. main, HEAD~1)")
    parser.add_argument("--config", default="config/smoke.yaml", help="the study to run (default config/smoke.yaml)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="Snakemake's --cores on each side")
    parser.add_argument("--keep", help="run in this new folder and keep it (default: a temporary folder, removed)")
    parser.add_argument("targets", nargs="*", help="Snakemake targets (default: the whole study)")
    args = parser.parse_args(argv)
    root = Path(_git(Path.cwd(), "rev-parse", "--show-toplevel", text=True).stdout.strip() or ".")
    if args.keep and Path(args.keep).exists():
        print(f"error: --keep {args.keep}: exists; name a new folder", file=sys.stderr)
        return 2
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mrd-neutral-"))
    try:
        from .config import study_config

        name = study_config(root / args.config, root / "config" / "config.yaml")["name"]
        base, work = checkouts(root, args.base, folder)
        seconds = [run_side(side, args.config, args.cores, args.targets) for side in (base, work)]
        compared, differences = compare(base / "results" / name, work / "results" / name)
    except (ValueError, RuntimeError, OSError) as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{args.config} at {args.base} ({seconds[0]:.0f} s) and at the work tree ({seconds[1]:.0f} s): "
          f"{compared} result files compared, {len(differences)} differ")
    for line in differences:
        print(f"  {line}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
