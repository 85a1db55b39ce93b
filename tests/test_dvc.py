"""The reviewer flow (smoke config): run the study with `dvc repro`, `dvc push`, clone, `dvc pull`
(`make pull`); then Snakemake plans nothing and `dvc status` is clean: nothing is retrained."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_workflow import ROOT, copy_project

BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def sh(cwd: Path, *cmd: str) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.mark.slow
def test_reviewer_gets_every_artifact_without_recomputing(tmp_path):
    author, reviewer, store = tmp_path / "author", tmp_path / "reviewer", tmp_path / "store"
    author.mkdir()
    copy_project(author)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, author)
    shutil.copytree(ROOT / ".dvc", author / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    shutil.copytree(ROOT / "src", author / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(author / "config" / "smoke.yaml", author / "config" / "config.yaml")  # DVC runs config.yaml's study
    sh(author, "git", "init", "-q")
    sh(author, "dvc", "remote", "add", "-d", "-f", "local", str(store))
    sh(author, "dvc", "repro")
    sh(author, "git", "add", "-A")
    sh(author, "git", "commit", "-qm", "study")
    sh(author, "dvc", "push")
    assert (author / "dvc.lock").is_file() and any(store.rglob("*"))

    sh(tmp_path, "git", "clone", "-q", str(author), str(reviewer))
    assert not (reviewer / "results" / "smoke" / "models").exists()
    sh(reviewer, "dvc", "pull")
    assert (reviewer / "results" / "smoke" / "models" / "target" / "config.json").is_file()
    assert (reviewer / "results" / "smoke" / "report.md").read_text() == (author / "results" / "smoke" / "report.md").read_text()
    assert "up to date" in sh(reviewer, "dvc", "status")  # the artifacts dvc.lock records for this code
    # DVC checkouts do not keep modification times, and Snakemake 9 compares them whatever its rerun
    # triggers: --touch restores the DAG's order of timestamps without running anything
    sh(reviewer, sys.executable, "-m", "snakemake", "--cores", "1", "--touch")
    assert "Nothing to be done" in sh(reviewer, sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run")
    assert "up to date" in sh(reviewer, "dvc", "status")
    assert "rho_mrd_update_count" in sh(reviewer, "dvc", "metrics", "show")
