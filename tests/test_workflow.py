"""End to end: the Snakemake workflow on config/smoke.yaml, in a scratch copy of the project."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .test_tofu import TOFU, needs_tofu

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml"]


def copy_project(work: Path) -> Path:
    """The workflow's own files (the package is installed), so results land in a scratch folder."""
    shutil.copy(ROOT / "Snakefile", work)
    for folder in ("workflow", "config", "envs", "profiles"):
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


def planned_jobs(work: Path, patch: str | None = None) -> dict[str, int]:
    """Rule -> job count of a dry run, optionally with a config patch merged over smoke.yaml."""
    cmd = list(SNAKEMAKE)  # ends with --configfile config/smoke.yaml
    if patch is not None:
        (work / "config" / "patch.yaml").write_text(patch)
        cmd += ["config/patch.yaml"]  # --configfile takes several files; later ones win
    cmd += ["--dry-run"]
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout + done.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0].splitlines()
    return {parts[0]: int(parts[1]) for parts in (line.split() for line in table)
            if len(parts) == 2 and parts[1].isdigit()}


REPORTING = {"unlearning_table", "comparison_table", "unlearning_figures", "report", "all"}


@pytest.mark.slow
def test_changing_an_unlearning_hyperparameter_plans_only_unlearning_and_what_follows(smoke_run):
    work, _ = smoke_run
    jobs = planned_jobs(work, "unlearning: {steps: 3}\n")
    assert set(jobs) == {"unlearn", "evaluate_unlearned"} | REPORTING
    assert jobs["unlearn"] == jobs["evaluate_unlearned"] == 8


@pytest.mark.slow
def test_changing_mrd_K_plans_mrd_and_weighted_runs_but_not_finetuning_or_uniform_runs(smoke_run):
    work, _ = smoke_run
    jobs = planned_jobs(work, "mrd: {K: 3}\n")
    assert {"mrd", "mrd_variants", "scores", "mrd_validation", "mrd_figures", "unlearn"} <= set(jobs)
    assert not {"prepare_data", "tokenizer", "finetune", "evaluate_finetuned", "ground_truth", "baselines"} & set(jobs)
    assert jobs["unlearn"] == 4  # the mrd_refresh runs (2 algorithms x 2 seeds); the uniform runs stay


@pytest.mark.slow
def test_changing_a_validation_variant_does_not_rerun_unlearning(smoke_run):
    work, _ = smoke_run
    jobs = planned_jobs(work, "mrd: {validation: {retest_seed: 5}}\n")
    assert set(jobs) == {"mrd_variants", "scores", "mrd_validation", "mrd_figures", "report", "all"}


@pytest.mark.slow
def test_two_runs_from_scratch_give_identical_results(smoke_run, tmp_path):
    """Same seed, same machine: every table, score and headline number is identical (timings aside)."""
    _, first = smoke_run
    work = copy_project(tmp_path)
    done = subprocess.run(SNAKEMAKE, cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    second = work / "results" / "smoke"
    timing = ["wall_s", "refresh_s"]
    for name in ["mrd/scores.csv", "mrd/variants.csv", *[f"tables/{p.name}" for p in (first / "tables").glob("*.csv")]]:
        a, b = (pd.read_csv(root / name) for root in (first, second))
        pd.testing.assert_frame_equal(a.drop(columns=timing, errors="ignore"), b.drop(columns=timing, errors="ignore"),
                                      check_exact=True)
    assert json.loads((first / "metrics.json").read_text()) == json.loads((second / "metrics.json").read_text())


@pytest.mark.slow
def test_html_report_has_every_figure_and_table_with_its_caption(smoke_run):
    work, _ = smoke_run
    done = subprocess.run(SNAKEMAKE + ["--report", "report.html"], cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    html = (work / "report.html").read_text()
    captions = sorted((ROOT / "workflow" / "report").glob("*.rst"))
    assert len(captions) == 11
    for caption in captions:
        first_words = " ".join(caption.read_text().split()[:4])
        assert first_words in html, caption.name


def dry_run_jobs(out: str) -> dict[str, int]:
    table = out.split("Job stats:")[1].split("total")[0].splitlines()
    return {parts[0]: int(parts[1]) for parts in (line.split() for line in table)
            if len(parts) == 2 and parts[1].isdigit()}


@pytest.mark.slow
def test_slurm_profile_plans_the_paper_matrix(tmp_path):
    """No cluster needed: a dry run through the SLURM executor plans 3 forget splits x (2 models,
    MRD, 2 ground truths, 5 algorithms x 3 samplers x 5 seeds)."""
    copy_project(tmp_path)
    done = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--configfile",
                           "config/paper.yaml", "-n"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = dry_run_jobs(done.stdout + done.stderr)
    assert jobs["unlearn"] == jobs["evaluate_unlearned"] == 3 * 5 * 3 * 5
    assert jobs["finetune"] == 6 and jobs["ground_truth"] == 6 and jobs["mrd"] == 3 and jobs["report"] == 3
    out = done.stdout + done.stderr
    assert "results/paper_forget10/report.md" in out
    assert "runtime=720, gpu=4" in out  # fine-tuning: 4 data-parallel processes, one GPU each
    other = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--configfile",
                            "config/paper.yaml", "--config", "model={name_or_path: microsoft/phi-1_5}", "-n"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert other.returncode == 0 and "microsoft/phi-1_5" in other.stdout + other.stderr


@pytest.mark.slow
@needs_tofu
def test_end_to_end_on_a_slice_of_real_tofu(tmp_path):
    """forget01 (40 QA) against 1 retain author, the tiny model, every stage of the study."""
    work = copy_project(tmp_path)
    (work / "config" / "here.yaml").write_text(f"data: {{tofu: {{path: {TOFU}}}}}\n")
    done = subprocess.run(SNAKEMAKE + ["config/smoke_tofu.yaml", "config/here.yaml"], cwd=work, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    out = work / "results" / "smoke_tofu"
    assert len(pd.read_csv(out / "mrd/scores.csv")) == 40
    target = json.loads((out / "eval/target.json").read_text())
    assert target["model_utility_parts"] == 9  # retain, real_authors, world_facts x (prob, ROUGE, truth ratio)
    samples = pd.read_csv(out / "eval/target_samples.csv")
    assert samples.split.value_counts().to_dict() == {"forget": 40, "retain": 6, "real_authors": 4, "world_facts": 4}
    assert samples[samples.split == "real_authors"].normalized_prob.between(0, 1).all()
    assert len(pd.read_csv(out / "tables/unlearning.csv")) == 8
    assert "TOFU" in (out / "report.md").read_text()
