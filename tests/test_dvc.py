"""DVC on the smoke study (reusing the session's smoke run, so nothing is computed twice): the
author records it with `dvc repro` and `dvc push`; a reviewer clones, `dvc pull`s (`make pull`)
and gets every artifact with nothing retrained; and a parameter sweep runs as a DVC experiment
that `dvc exp show` lists with its metrics."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mrd_unlearning.config import merged_config

from .conftest import ROOT

pytestmark = pytest.mark.e2e

BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def sh(cwd: Path, *cmd: str) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def author(smoke_run, tmp_path_factory):
    """The smoke run's project (results and Snakemake's records included, modification times
    kept) as a git + DVC repository whose config/config.yaml is the smoke study, recorded by
    `dvc repro` and pushed to a local remote."""
    work, _, _ = smoke_run
    root = tmp_path_factory.mktemp("dvc")
    repo, store = root / "author", root / "store"
    shutil.copytree(work, repo, symlinks=True)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, repo)
    shutil.copytree(ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # DVC runs config.yaml's study: the smoke study is config.yaml with smoke.yaml merged over it
    # (`--configfile`), so that merge becomes config.yaml (smoke.yaml alone would drop the keys it
    # inherits, change the rules' params and rerun their jobs)
    config = repo / "config" / "config.yaml"
    smoke = yaml.safe_load((repo / "config" / "smoke.yaml").read_text())
    merged = merged_config(yaml.safe_load(config.read_text()), smoke)
    config.write_text(yaml.safe_dump(merged, sort_keys=False))
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "remote", "add", "-d", "-f", "local", str(store))
    repro = sh(repo, "dvc", "repro")
    # every computed output up to date: only the run record, which names the config files, is rewritten
    assert set(re.findall(r"rule (\w+):", repro)) <= {"run_record", "all"}, repro[-3000:]
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "study")
    sh(repo, "dvc", "push")
    assert (repo / "dvc.lock").is_file() and any(store.rglob("*"))
    return repo


def test_reviewer_gets_every_artifact_without_recomputing(author, tmp_path):
    reviewer = tmp_path / "reviewer"
    sh(tmp_path, "git", "clone", "-q", str(author), str(reviewer))
    assert not (reviewer / "results" / "smoke" / "models").exists()
    sh(reviewer, "dvc", "pull")
    assert (reviewer / "results" / "smoke" / "models" / "rep1" / "target" / "config.json").is_file()
    made = author / "results" / "smoke"
    for path in [*made.glob("*.*"), *(made / "tables").iterdir(), *(made / "figures").iterdir(), *(made / "mrd").rglob("*.*")]:
        name = path.relative_to(made)  # every table, figure, score and the report: DVC tracks each one
        assert (reviewer / "results/smoke" / name).read_bytes() == path.read_bytes(), name
    assert "up to date" in sh(reviewer, "dvc", "status")  # the artifacts dvc.lock records for this code
    # DVC checkouts do not keep modification times, and Snakemake 9 compares them whatever its rerun
    # triggers: --touch restores the DAG's order of timestamps without running anything
    sh(reviewer, sys.executable, "-m", "snakemake", "--cores", "1", "--touch")
    assert "Nothing to be done" in sh(reviewer, sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run")
    assert "up to date" in sh(reviewer, "dvc", "status")
    assert "verdict_C2" in sh(reviewer, "dvc", "metrics", "show")


def test_a_parameter_sweep_runs_as_a_dvc_experiment(author):
    """`dvc exp run -S` changes a parameter and reruns what it touches (here the calibration's
    simulations: the calibration and the report, not the models or the other tables); `dvc exp
    show` lists the experiment beside the workspace, with its parameter and metrics."""
    done = sh(author, "dvc", "exp", "run", "-n", "more-simulations", "-S",
              "config/config.yaml:statistics.calibration.simulations=30")
    assert "rule calibration" in done and "rule report" in done and "rule mrd_validation" not in done
    shown = sh(author, "dvc", "exp", "show", "--no-pager", "--csv")
    header, *rows = shown.strip().splitlines()
    assert "statistics.calibration.simulations" in header and "verdict_C4" in header
    experiment = [row for row in rows if "more-simulations" in row]
    assert len(experiment) == 1 and ",30," in experiment[0]
