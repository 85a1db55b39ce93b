"""End to end: the Snakemake workflow on config/smoke.yaml, in a scratch copy of the project."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml"]


def copy_project(work: Path) -> Path:
    """The workflow's own files (the package is installed), so results land in a scratch folder."""
    shutil.copy(ROOT / "Snakefile", work)
    for folder in ("workflow", "config", "envs"):
        shutil.copytree(ROOT / folder, work / folder, symlinks=True)
    return work


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = copy_project(tmp_path_factory.mktemp("project"))
    done = subprocess.run(SNAKEMAKE, cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    return work, work / "results" / "smoke"


@pytest.mark.slow
def test_outputs_follow_the_contract(smoke_run):
    _, out = smoke_run
    scores = pd.read_csv(out / "mrd/scores.csv")
    assert {"sample_id", "mrd", "drop", "update_count", "censored", "update_count_sgd", "censored_sgd", "loss",
            "grad_norm", "max_token_nll", "answer_tokens", "retain_model_loss_oracle", "mrd[abs]",
            "value_frequency"} <= set(scores)
    assert len(scores) == 6  # 2 forget people x 3 attributes
    validation = pd.read_csv(out / "tables/mrd_validation.csv")
    assert {"score", "ground_truth", "spearman_rho", "ci_low", "ci_high", "p_value"} <= set(validation)
    assert set(validation.ground_truth) == {"update_count", "update_count_sgd"}
    assert {"mrd", "mrd[relative_normalize]", "grad_norm", "max_token_nll", "mrd given loss + grad_norm"} <= set(validation.score)
    stability = pd.read_csv(out / "tables/mrd_stability.csv")
    assert {"main", "abs", "small_sigma"} <= set(stability.variant) and set(stability.sweep) == {"K", "sigma"}
    assert stability.retest_rho.between(-1, 1).all()
    runs = pd.read_csv(out / "tables/unlearning.csv")
    assert list(runs.columns) == ["algorithm", "sampler", "seed", "forget_quality", "model_utility", "forget_prob",
                                  "forget_rouge", "forget_truth_ratio", "mia_auc", "steps_to_forget", "wall_s",
                                  "refreshes", "refresh_s"]
    assert len(runs) == 8 and set(runs.sampler) == {"uniform", "mrd_refresh"} and set(runs.algorithm) == {"ga", "npo_rt"}
    assert (runs[runs.sampler == "mrd_refresh"].refreshes == 1).all()  # 4 steps, refresh every 2
    assert runs.forget_quality.between(0, 1).all() and runs.model_utility.between(0, 1).all()
    comparison = pd.read_csv(out / "tables/comparison.csv")
    assert comparison[["algorithm", "sampler", "n_pairs"]].values.tolist() == [["ga", "mrd_refresh", 2],
                                                                              ["npo_rt", "mrd_refresh", 2]]
    for fig in ("difficulty.png", "mrd_validation.png", "factors.png", "mrd_stability.png", "unlearning_curves.png",
                "unlearning_tradeoff.png"):
        assert (out / "figures" / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    for claim in ("C1", "C2", "C3", "C4"):
        assert f"**{claim}" in report
    assert "rho_mrd_update_count" in json.loads((out / "metrics.json").read_text())
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_second_run_plans_nothing(smoke_run):
    work, _ = smoke_run
    dry = subprocess.run(SNAKEMAKE + ["--dry-run"], cwd=work, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.slow
def test_bad_config_fails_before_any_job(tmp_path):
    copy_project(tmp_path)
    (tmp_path / "config" / "bad.yaml").write_text("name: bad\nmrd: {statistic: median}\n")
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "config/bad.yaml"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0
    assert "mrd.statistic" in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()
