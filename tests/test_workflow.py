"""End to end: the Snakemake workflow on config/smoke.yaml (2 replicates), in a scratch copy of the
project. Tests that only read the smoke run's outputs, or dry-run against them, share one run."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mrd_unlearning.provenance import rule_identities
from mrd_unlearning.snapshot import dry_run_jobs

from .conftest import ROOT, assert_same_numbers, copy_project, forced_jobs, run_snakemake
from .test_tofu import TOFU, needs_tofu

pytestmark = pytest.mark.e2e

RUN_COLUMNS = ["replicate", "algorithm", "sampler", "seed", "forget_quality", "forget_ks", "model_utility",
               "forget_prob", "forget_rouge", "forget_truth_ratio", "mia_auc", "mia_loss", "mia_zlib", "mia_min_k_pp",
               "mia_grad_norm", "mia_reference", "privleak", "steps", "steps_to_forget",
               "steps_censored", "forget_progress", "forget_auc", "wall_s", "refreshes", "refresh_s", "attack_s", "level_step",
               "level_reached", "level_forget_quality", "level_forget_ks", "level_forget_rouge", "level_model_utility"]


def test_outputs_follow_the_contract(smoke_run):
    _, out, _ = smoke_run
    scores = pd.read_csv(out / "mrd/scores.csv")
    assert {"replicate", "sample_id", "mrd", "drop", "update_count", "censored", "update_count_sgd", "censored_sgd",
            "loss", "grad_norm", "max_token_nll", "answer_tokens", "retain_model_loss_oracle", "mrd[abs]",
            "value_frequency", "memorization", "entanglement", "mrd_thirdparty", "learning_confidence",
            "epoch_learned", "forgetting_events", "group", "update_count_frac", "update_count_sgd_frac",
            "question_tokens", "token_rarity", "numeric_share", "name_share", "base_loglik"} <= set(scores)
    assert scores.groupby("replicate").group.nunique().to_dict() == {0: 2, 1: 2}  # 2 people, 3 facts each
    for truth, censored in (("update_count", "censored"), ("update_count_sgd", "censored_sgd")):
        frac, count = scores[f"{truth}_frac"], scores[truth]
        assert ((count - 1 < frac) & (frac <= count) | (count == 0) & (frac == 0)).all()
        for replicate in (0, 1):  # the likelihood curves the counts were read from
            curves = pd.read_csv(out / f"mrd/rep{replicate}/{truth}_curves.csv")
            mine = scores[scores.replicate == replicate].set_index("sample_id")
            assert (curves.groupby("sample_id").updates.max() == mine[truth]).all()
    assert scores.learning_confidence.between(0, 1).all() and (scores.entanglement > 0).all()
    assert scores.groupby("replicate").size().to_dict() == {0: 6, 1: 6}  # 2 forget people x 3 attributes
    assert scores[scores.replicate == 1]["mrd[abs]"].isna().all()  # the variant study runs on the first replicate
    validation = pd.read_csv(out / "tables/mrd_validation.csv", dtype={"replicate": str})
    assert {"replicate", "score", "ground_truth", "spearman_rho", "ci_low", "ci_high", "p_value", "between_sd",
            "p_holm", "n", "n_groups", "n_replicates"} <= set(validation)
    assert set(validation.replicate) == {"0", "1", "pooled"} and set(validation.n_groups) == {2}
    assert set(validation.ground_truth) == {"update_count_frac", "update_count_sgd_frac", "update_count",
                                            "update_count_sgd"}
    characteristics = set(validation[validation.kind == "sample characteristic"].score)
    assert {"token_rarity", "base_loglik"} <= characteristics and "group_difficulty" not in characteristics
    assert set(validation.resampling.dropna()) == {"within"}  # 2 people: inference within them
    assert {"mrd", "mrd[relative_normalize]", "grad_norm", "max_token_nll", "mrd given loss + grad_norm"} <= set(
        validation.score)
    assert (validation[validation.replicate == "pooled"].n_replicates.isin([1, 2])).all()
    stability = pd.read_csv(out / "tables/mrd_stability.csv")
    assert {"main", "abs", "small_sigma"} <= set(stability.variant) and set(stability.sweep) == {"K", "sigma"}
    assert set(stability.replicate) == {0} and stability.retest_rho.between(-1, 1).all()
    across = pd.read_csv(out / "tables/replicate_stability.csv", dtype={"replicate_a": str})
    assert {"update_count", "mrd"} <= set(across.quantity) and "mean of pairs" in set(across.replicate_a)
    runs = pd.read_csv(out / "tables/unlearning.csv")
    assert list(runs.columns) == RUN_COLUMNS
    assert len(runs) == 16 and set(runs.replicate) == {0, 1}  # 2 replicates x 2 algorithms x 2 samplers x 2 seeds
    assert set(runs.sampler) == {"uniform", "mrd_refresh"}
    assert set(runs.algorithm) == {"ga", "npo_rt"}
    attacks = runs[["mia_auc", "mia_loss", "mia_zlib", "mia_min_k_pp", "mia_grad_norm", "mia_reference"]]
    assert attacks.notna().all().all() and ((attacks >= 0) & (attacks <= 1)).all().all()
    # refresh every 2 steps: at 2, 4 and 6 of the 8 steps a run takes on its way to the level (cap 2 x 4)
    assert (runs[runs.sampler == "mrd_refresh"].refreshes == 3).all()
    assert runs.forget_quality.between(0, 1).all() and runs.model_utility.between(0, 1).all()
    assert runs.forget_ks.between(0, 1).all() and runs.forget_auc.between(0, 1).all()
    assert (runs.steps_to_forget <= runs.steps).all() and (runs.level_step <= 2 * runs.steps).all()
    assert ((runs.steps_to_forget == runs.steps) | ~runs.steps_censored).all()
    comparison = pd.read_csv(out / "tables/comparison.csv", dtype={"replicate": str})
    pooled = comparison[comparison.replicate == "pooled"]
    assert pooled[["algorithm", "sampler", "versus", "family", "n_pairs"]].values.tolist() == [
        [algorithm, "mrd_refresh", "uniform", "paper", 4] for algorithm in ("ga", "npo_rt")]
    assert set(comparison.replicate) == {"pooled", "0", "1"}
    for column in ("forget_quality_diff", "forget_quality_p_holm", "model_utility_mde", "model_utility_mde_ratio",
                   "p_floor", "holm_family_size", "level_n_pairs", "level_model_utility_diff", "forget_auc_ci_low"):
        assert column in comparison
    authors = pd.read_csv(out / "tables/author_outcomes.csv", dtype={"group": str})
    groups = pd.read_csv(out / "mrd/scores.csv", dtype={"group": str})
    groups = groups[groups.replicate == 0].set_index("sample_id").group
    assert len(authors) == len(runs) * groups.nunique() and (authors.metric == "truth_ratio_gap").all()
    first = authors.iloc[0]  # by hand: mean |log R - log R_retain| over the group's forget questions
    run_dir = out / f"unlearning/rep{first.replicate}/{first.algorithm}/{first.sampler}/seed{first.seed}"
    unlearned = pd.read_csv(run_dir / "eval_budget_samples.csv").query("split == 'forget'").set_index("sample_id")
    retain = pd.read_csv(out / f"eval/rep{first.replicate}/retain_samples.csv").query("split == 'forget'")
    ids = groups[groups == first.group].index
    gap = np.abs(np.log(unlearned.truth_ratio[ids]) - np.log(retain.set_index("sample_id").truth_ratio[ids]))
    assert first.outcome == pytest.approx(gap.mean())
    unit = pd.read_csv(out / "tables/c4_unit.csv")
    assert list(unit.unit) == ["pair", "group"] and unit.chosen.sum() == 1 and unit.run_share_ci_high.notna().all()
    assert unit.n_units.tolist() == [4, groups.nunique()]
    calibration = pd.read_csv(out / "tables/calibration.csv")
    assert list(calibration.claim[:13]) == ["C1", "C1", "C2", "C2", "C3", "C3", "C1", "C2", "C3", "C2", "C3",
                                            "C4 secondary", "C4 secondary"]
    assert list(calibration.condition[6:11]) == ["groups differ", *["association varying by training run"] * 2,
                                                 *["crossed attributes"] * 2]  # beyond the scope
    primary = calibration.iloc[13:].set_index(["claim", "condition"])  # the primary comparison's rule
    assert {(c, k) for c in ("C4a", "C4b", "C4") for k in ("no effect", "smallest effect", "effect varying by model")} \
        | {("C4a", "one effect absent"), ("C4b", "one effect absent")} == set(primary.index)
    assert calibration.false_verdict_upper95.dropna().between(0, 1).all()
    assert (calibration.simulations[:13] == 20).all()
    assert (calibration.simulations[13:] == 400).all()  # the primary rule: 20 x, vectorised
    for fig in ("difficulty.png", "mrd_validation.png", "factors.png", "mrd_stability.png", "unlearning_curves.png",
                "unlearning_tradeoff.png", "unlearning_efficiency.png"):
        assert (out / "figures" / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["verdict_C4a"] in report and metrics["verdict_C4b"] in report
    assert metrics["primary_C4a_forget_auc_n_pairs"] == 4  # ga mrd_refresh - uniform, 2 seeds x 2 models
    for claim in ("C1", "C2", "C3", "C4"):
        assert f"**Verdict {claim} (pooled" in report
        assert isinstance(metrics[f"verdict_{claim}"], str) and metrics[f"verdict_{claim}"] in report
        assert metrics[f"verdict_{claim}_replicates"].endswith("of 2 replicates")
        assert metrics[f"verdict_{claim}"] in ("supported", "contradicted", "no effect of interesting size",
                                               "inconclusive", "partly supported", "mixed")
        assert 0 <= metrics[f"{claim}_false_verdict_upper95"] <= 1 and 0 <= metrics[f"{claim}_power"] <= 1
    assert metrics["verdict_C2_scope"] == "within these 2 people"
    assert "rho_mrd_update_count" in metrics and metrics["replicates"] == 2
    assert "## MRD against the field" in report and "| 1 | " in report  # the ranking of the scores
    assert "**C4's unit: run pairs or people?**" in report
    verdicts = pd.read_csv(out / "tables/verdicts.csv")  # the answers, as the report's closing table gives them
    assert list(verdicts.claim) == ["C1", "C2", "C3", "C4", "C4a", "C4b", "C1-SGD", "C2-SGD"]
    assert [metrics[f"verdict_{c}"] for c in verdicts.claim] == list(verdicts.verdict)
    pooled_mrd = validation[(validation.replicate == "pooled") & (validation.score == "mrd")
                            & (validation.ground_truth == "update_count_frac")].iloc[0]
    assert verdicts.estimate[1] == pytest.approx(pooled_mrd.spearman_rho)
    assert verdicts.estimate[0] == pytest.approx(metrics["update_count_frac_p90_over_p10"])
    estimated = verdicts.dropna(subset=["estimate"])  # C4's rows name the test that blocks it: here one with no pairs
    assert (estimated.ci_low <= estimated.estimate).all() and (estimated.estimate <= estimated.ci_high).all()
    assert set(verdicts.claim) - set(estimated.claim) <= {"C4", "C4a", "C4b"}
    assert verdicts.set_index("claim").statistic["C4a"].startswith("steps_to_forget difference, ga mrd_refresh - "
                                                                    "uniform, not estimable")
    assert verdicts.false_verdict_upper95.tolist() == [metrics[f"{c.split('-')[0]}_false_verdict_upper95"]
                                                       for c in verdicts.claim]  # SGD rows: the same rule
    ranking = metrics["score_ranking_update_count_frac"]  # the primary ground truth: the fractional step
    assert "rho_mrd_update_count_frac" in metrics
    assert ranking[0] in validation.score.values and {"mrd", "memorization", "entanglement"} <= set(ranking)
    assert "(target model, not unlearned)" in report  # the attacks' reference points
    # generated words read as English: no "each people's", "these 1 models", nested brackets; replicate
    # ids in the per-replicate rho table are labelled, not bare numbers beside the rho values
    assert not re.search(r"each people's|these 1 |\(the study's groups \(", report)
    # C1's power is stated at its planted spread (its calibration row), not at the threshold the verdict words name
    assert re.search(r"\| C1 \| smallest effect \| spread 4 \(planted; the threshold is 2\) \|", report)
    assert re.search(r"\| replicate 0 \| -?[\d.]+ \|", report) and re.search(r"\| replicate 1 \| -?[\d.]+ \|", report)
    assert not list(out.rglob("*.tmp"))
    assert not list((out / "unlearning").rglob("*.safetensors"))  # unlearned models are evaluated, not kept


def test_every_run_is_attacked_after_its_budget_and_read_beside_its_controls(smoke_run):
    """Each run's relearning (after 5 and 10 updates) and int8/int4 rounding, per sample and per
    run, by hand from the evaluations; the controls (retain model relearned, target rounded) per
    replicate; tiers, the rules' calibration, the report's section, metrics and samples.html."""
    _, out, _ = smoke_run
    attacks = {"relearn@5", "relearn@10", "int8", "int4"}
    samples = pd.read_csv(out / "tables/recovery_samples.csv")
    runs = pd.read_csv(out / "tables/recovery_runs.csv")
    assert set(samples.attack) == set(runs.attack) == attacks and set(runs.measure) == {"loglik", "truth_ratio",
                                                                                         "rouge_l"}
    assert len(runs) == 16 * len(attacks) * 3  # every run x attack x measure
    rouge = samples[samples.measure == "rouge_l"].groupby("attack").attacked.count()  # all after the longest only
    assert rouge["relearn@5"] == rouge["int8"] == rouge["int4"] == 0 and rouge["relearn@10"] > 0
    row = runs[(runs.measure == "loglik") & (runs.attack == "relearn@10") & runs.recovery.notna()].iloc[0]
    key = ["replicate", "algorithm", "sampler", "seed"]
    one = samples.merge(row[key].to_frame().T.astype(samples[key].dtypes)).query(
        "measure == 'loglik' and attack == 'relearn@10'")
    run_dir = out / f"unlearning/rep{row.replicate}/{row.algorithm}/{row.sampler}/seed{row.seed}"
    evaluated = pd.read_csv(run_dir / "eval_budget_samples.csv").query("split == 'forget'")
    target = pd.read_csv(out / f"eval/rep{row.replicate}/target_samples.csv").query("split == 'forget'")
    attacked = pd.read_csv(run_dir / "attacks_budget.csv").query("attack == 'relearn@10'")
    by_id = one.set_index("sample_id")
    assert by_id.unlearned.to_dict() == pytest.approx(evaluated.set_index("sample_id").loglik.to_dict())
    assert by_id.before.to_dict() == pytest.approx(target.set_index("sample_id").loglik.to_dict())
    assert by_id.attacked.to_dict() == pytest.approx(attacked.set_index("sample_id").loglik.to_dict())
    drop = by_id.before - by_id.unlearned
    moved = drop.abs() >= 0.05  # robustness.min_drop.loglik
    assert np.allclose(by_id.recovery[moved], ((by_id.attacked - by_id.unlearned) / drop)[moved])
    assert by_id.recovery[~moved].isna().all()
    assert len(by_id) == 6 and abs(drop.sum()) >= 6 * 0.05  # defined: the run moved its samples enough
    assert row.recovery == pytest.approx((by_id.attacked - by_id.unlearned).sum() / drop.sum())
    assert row.control_recovery == pytest.approx(by_id.control_change.sum() / drop.sum())
    assert row.beyond_control == pytest.approx(row.recovery - row.control_recovery)
    for replicate in (0, 1):  # relearning on the model that never saw the forget set, rounding on the target
        controls = pd.read_csv(out / f"robustness/rep{replicate}/controls.csv")
        assert set(zip(controls.model, controls.attack)) == {
            *(("retain", a) for a in attacks if a.startswith("relearn")), ("target", "int8"), ("target", "int4")}
    tiers = pd.read_csv(out / "tables/recovery_tiers.csv")
    assert {"mrd", "update_count"} <= set(tiers.score) and set(tiers.tier) == {"easy", "medium", "hard"}
    assert ((tiers.ci_low <= tiers.recovery) & (tiers.recovery <= tiers.ci_high)).all()
    comparison = pd.read_csv(out / "tables/robustness.csv")
    assert set(comparison.word) <= {"less robust", "more robust", "equivalent", "unclear"}
    assert (comparison.holm_family_size == len(comparison)).all()
    calibration = pd.read_csv(out / "tables/robustness_calibration.csv")
    assert list(calibration.rule) == ["difficulty-recovery"] * 2 + ["robustness MRD vs uniform"] * 2
    assert calibration.rate.between(0, 1).all() and (calibration.rate <= calibration.upper95).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recovery_beyond_control_relearn@10"] == pytest.approx(
        runs[(runs.measure == "loglik") & (runs.attack == "relearn@10")].beyond_control.mean())
    report = (out / "report.md").read_text()
    assert "## Does forgetting hold? Attacks after the budget" in report and metrics["verdict_robustness"] in report
    assert "\"relearn@10\"" in (out / "samples.html").read_text()  # a recovery column per attack
    assert (pd.read_csv(out / "tables/unlearning.csv").attack_s > 0).all()


def test_every_job_has_a_log_and_a_benchmark_and_the_console_is_snakemakes(smoke_run):
    work, out, console = smoke_run
    logs = sorted(p.relative_to(out / "logs").with_suffix("") for p in (out / "logs").rglob("*.log"))
    benchmarks = sorted(p.relative_to(out / "benchmarks").with_suffix("") for p in (out / "benchmarks").rglob("*.tsv"))
    planned = dry_run_jobs(console)  # the job table Snakemake printed before the run
    assert logs == benchmarks and len(logs) == sum(planned.values()) - 1  # every job but `all`
    record = json.loads((out / "run.json").read_text())  # what ran: every job but `all` and the record's own
    assert record["jobs"] == len(logs) - 1 and record["code"] == rule_identities(work)
    assert record["machines"][0]["jobs"] == record["jobs"] and record["machines"][0]["torch"]
    assert "Traceback" not in console and "INFO:snakemake" not in console  # each line once, no root-logger echo
    assert "Loading weights" not in console and "Writing model shards" not in console
    assert "fine-tune target" in (out / "logs/finetune/rep0_target.log").read_text()  # progress stays, in the log
    table = subprocess.run([sys.executable, "-m", "mrd_unlearning.timing", str(out)], capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    assert "unlearn" in table.stdout and "max_rss" in table.stdout and "total" in table.stdout


def test_second_run_plans_nothing(smoke_run):
    work, _, _ = smoke_run
    dry = run_snakemake(work, "--dry-run")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_changing_the_calibration_reruns_only_the_calibrations_and_the_report(smoke_run):
    """`make calibration` (snakemake --until calibration) after the study: a change to the
    calibration's settings plans the claims' calibration and the robustness tables (whose rules
    are calibrated too), and a full run the report that prints them."""
    jobs = planned_jobs(smoke_run[0], "statistics: {bootstrap_resamples: 200, calibration: {simulations: 30}}\n")
    assert {"calibration", "robustness_tables"} <= set(jobs)
    assert jobs == forced_jobs(smoke_run[0], "calibration", "robustness_tables")
    until = run_snakemake(smoke_run[0], "config/patch.yaml", "--until", "calibration", "--dry-run")
    assert dry_run_jobs(until.stdout + until.stderr) == {"calibration": 1}


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
    args = []
    if patch is not None:
        (work / "config" / "patch.yaml").write_text(patch)
        args = ["config/patch.yaml"]  # --configfile takes several files; later ones win
    done = run_snakemake(work, *args, "--dry-run")
    out = done.stdout + done.stderr
    return dry_run_jobs(out)


def test_changing_an_unlearning_hyperparameter_plans_only_unlearning_and_what_follows(smoke_run):
    jobs = planned_jobs(smoke_run[0], "unlearning: {steps: 3}\n")
    assert jobs == forced_jobs(smoke_run[0], "unlearn") and jobs["unlearn"] == 8  # 2 replicates x 2 algorithms x 2 samplers


def test_no_unlearned_checkpoint_is_left_unless_keep_models_says_so(smoke_run):
    """Unlearned models are evaluated in their own process and not written (unlearning.keep_models
    none); asking to keep them reruns only the unlearning runs and what follows."""
    _, out, _ = smoke_run
    assert not list((out / "unlearning").rglob("model.safetensors"))
    assert not list((out / "unlearning").rglob("config.json"))
    jobs = planned_jobs(smoke_run[0], "unlearning: {keep_models: first_seed}\n")
    assert jobs == forced_jobs(smoke_run[0], "unlearn") and jobs["unlearn"] == 8


def test_changing_mrd_K_plans_mrd_and_weighted_runs_but_not_finetuning_or_uniform_runs(smoke_run):
    jobs = planned_jobs(smoke_run[0], "mrd: {K: 3}\n")
    assert {"mrd", "mrd_variants", "scores", "mrd_validation", "mrd_figures", "unlearn"} <= set(jobs)
    assert not {"prepare_data", "tokenizer", "finetune", "evaluate_finetuned", "ground_truth", "baselines"} & set(jobs)
    assert jobs["unlearn"] == 4 and jobs["mrd"] == 2  # the MRD-driven runs of 2 replicates; the uniform runs stay


def test_changing_a_validation_variant_does_not_rerun_unlearning(smoke_run):
    jobs = planned_jobs(smoke_run[0], "mrd: {validation: {retest_seed: 5}}\n")
    assert jobs == forced_jobs(smoke_run[0], "mrd_variants")  # and what reads scores.csv (the page shows its columns)
    assert {"scores", "samples_page"} <= set(jobs) and "unlearn" not in jobs


def test_adding_a_replicate_plans_only_that_replicate_and_the_pooled_tables(smoke_run):
    jobs = planned_jobs(smoke_run[0], "replicates: [0, 1, 2]\n")
    assert jobs["finetune"] == 2 and jobs["evaluate_finetuned"] == 2 and jobs["mrd"] == 1
    assert jobs["ground_truth"] == 2 and jobs["unlearn"] == 4 and "mrd_variants" not in jobs
    assert not {"prepare_data", "tokenizer"} & set(jobs)


def test_pooled_stages_rerun_on_the_same_results_give_identical_tables(smoke_run, tmp_path):
    """Same seed, same machine: same numbers, for the pooled stages that resample or simulate
    (bootstraps, calibration), rerun on the smoke run's per-replicate results. (The per-replicate
    stages are rerun from scratch by the local-folder test below.)"""
    work, first, _ = smoke_run
    again = tmp_path / "again"
    shutil.copytree(work, again, symlinks=True)
    done = run_snakemake(again, "--forcerun", "mrd_validation", "comparison_table", "calibration")
    assert {"mrd_validation", "comparison_table", "calibration", "report"} <= set(
        re.findall(r"rule (\w+):", done.stdout + done.stderr))
    pooled = [*[f"tables/{p.name}" for p in (first / "tables").glob("*.csv")], "metrics.json", "report.md"]
    for name in pooled:
        assert_same_numbers(first, again / "results" / "smoke", name)


def test_html_report_has_every_figure_and_table_with_its_caption(smoke_run):
    work, _, _ = smoke_run
    run_snakemake(work, "--report", "report.html")
    html = (work / "report.html").read_text()
    captions = sorted((ROOT / "workflow" / "report").glob("*.rst"))  # 19 captions and the start page's text
    assert len(captions) == 20
    for caption in captions:
        first_words = " ".join(caption.read_text().split()[:4])
        assert first_words in html, caption.name


def test_lint_is_clean_and_snakefiles_are_formatted():
    lint = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--configfile", "config/smoke.yaml"],
                          cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0 and "Lints for" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    files = [str(ROOT / "Snakefile"), *map(str, sorted((ROOT / "workflow" / "rules").glob("*.smk")))]
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_slurm_profile_plans_the_paper_matrix(tmp_path):
    """No cluster needed: a dry run through the SLURM executor plans 3 forget splits x 4 replicates
    x (2 models, MRD, 2 ground truths, 5 algorithms x 3 samplers, each job running the 5 seeds)."""
    copy_project(tmp_path)
    done = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--configfile",
                           "config/paper.yaml", "-n"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = dry_run_jobs(done.stdout + done.stderr)
    assert jobs["unlearn"] == 3 * 4 * 5 * 3
    assert jobs["finetune"] == 24 and jobs["ground_truth"] == 24 and jobs["mrd"] == 12 and jobs["report"] == 3
    out = done.stdout + done.stderr
    assert "results/paper_forget10/report.md" in out
    # fine-tuning on 4 GPUs (FSDP), its host memory and time limit from the plan (plan.job_resources)
    assert re.search(r"mem_mb=256000, .*runtime=\d+, gpu=4", out)
    assert "does not fit" not in out
    # another model from the command line: the plan sizes its jobs (phi-1.5's fine-tuning is shorter)
    target = "results/paper_forget01/models/rep0/target"
    other = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--configfile",
                            "config/paper.yaml", "--config", "model={name_or_path: microsoft/phi-1_5}", "-n", target],
                           cwd=tmp_path, capture_output=True, text=True)
    assert other.returncode == 0, other.stderr[-3000:]
    assert 0 < _finetune_runtime(other.stdout + other.stderr, target) < _finetune_runtime(out, target)


def _finetune_runtime(dry_run: str, output: str) -> int:
    """The planned runtime (minutes) of the fine-tuning job that writes `output`, from a dry run."""
    job = next(block for block in dry_run.split("\n\n") if "rule finetune:" in block and f"output: {output}" in block)
    return int(re.search(r"runtime=(\d+)", job).group(1))


@needs_tofu
def test_end_to_end_on_a_slice_of_real_tofu(tmp_path):
    """2 questions of each of forget05's 10 authors against 1 retain author, the tiny model, every
    stage of the study; C2 and C3 speak about authors (10 groups: the sign-flip test over them)."""
    work = copy_project(tmp_path)
    (work / "config" / "here.yaml").write_text(f"data: {{tofu: {{path: {TOFU}}}}}\n")
    run_snakemake(work, "config/smoke_tofu.yaml", "config/here.yaml")
    out = work / "results" / "smoke_tofu"
    scores = pd.read_csv(out / "mrd/scores.csv")
    assert len(scores) == 20 and scores.group.nunique() == 10
    target = json.loads((out / "eval/rep0/target.json").read_text())
    assert target["model_utility_parts"] == 9  # retain, real_authors, world_facts x (prob, ROUGE, truth ratio)
    samples = pd.read_csv(out / "eval/rep0/target_samples.csv")
    assert samples.split.value_counts().to_dict() == {"forget": 20, "retain": 6, "real_authors": 4, "world_facts": 4,
                                                      "holdout": 20}  # the membership attacks' non-members
    assert samples[samples.split == "real_authors"].normalized_prob.between(0, 1).all()
    # max_new_tokens auto: one limit, a forget answer's length (TOFU's are sentences), for world facts' short ones too
    assert target["max_new_tokens"] > 20
    runs = pd.read_csv(out / "tables/unlearning.csv")
    assert len(runs) == 2 and (runs.level_step <= runs.steps).all()  # level_cap 1: never past the budget
    assert set(runs.algorithm) == {"idknll"}  # refusals as targets, on real questions
    assert (out / "unlearning/rep0/idknll/mrd/seed0/eval_budget_TOFU_EVAL.json").is_file()
    report = (out / "report.md").read_text()
    assert "TOFU" in report and f"up to {target['max_new_tokens']} new tokens (`auto`" in report
    validation = pd.read_csv(out / "tables/mrd_validation.csv", dtype={"replicate": str})
    mrd = validation[(validation.replicate == "pooled") & (validation.score == "mrd")]
    assert set(mrd.resampling) == {"group sign-flip"} and (mrd.n_groups == 10).all()
    assert "within these 10" not in report
    assert "2 questions of each of its 10 authors" in report and "never saw a forget author" in report


def test_budget_pilot_times_uniform_runs_on_the_studys_own_models(smoke_run):
    """`make budget`: uniform runs only, on the study's fine-tuned models, each until the retain
    model's level or the cap; T = the smallest multiple of 5 at least 1.15 x the latest crossing."""
    from mrd_unlearning.budget import suggested_budget

    assert [suggested_budget([c]) for c in (26.2, 27.1, 39.8)] == [35, 35, 50]  # the default study's budgets (pilot crossings)
    work, _, _ = smoke_run
    done = subprocess.run([sys.executable, "-m", "mrd_unlearning.budget", "--config", "config/smoke.yaml",
                           "--algorithms", "ga", "idknll", "--cap", "6"], cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["study"] == "smoke" and set(summary["algorithms"]) == {"ga", "idknll"}
    for result in summary["algorithms"].values():
        assert result["runs"] == 4  # 2 replicates x 2 seeds
        assert result["budget"] is None if not result["reached"] else result["budget"] >= result["latest_crossing"]


# --- your data, your model (data.source local, text rows, the score command) ----------------------

def test_the_score_command_gives_the_workflows_mrd(smoke_run, tmp_path):
    """`mrd-unlearning score` on a smoke target model, with the smoke study's MRD settings (K 4,
    sigma auto on its grid, seed 0, 1 thread): the same rows and numbers as the MRD rule."""
    work, out, _ = smoke_run
    cmd = [sys.executable, "-m", "mrd_unlearning.cli", "score", "--model", str(out / "models/rep0/target"),
           "--data", str(out / "data/forget25.json"), "--out", str(tmp_path / "scores.csv"), "--K", "4",
           "--sigma-grid", "0.01", "0.1", "--threads", "1", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    scores, workflow = pd.read_csv(tmp_path / "scores.csv"), pd.read_csv(out / "mrd/rep0/mrd.csv")
    assert list(scores) == ["sample_id", "mrd", "drop", "loglik", "weight_uniform", "weight_mrd", "negative_drop"]
    pd.testing.assert_frame_equal(scores.drop(columns="negative_drop"), workflow)
    info = json.loads((tmp_path / "scores.csv.json").read_text())
    assert info["sigma"] == json.loads((out / "mrd/rep0/mrd.json").read_text())["sigma"] and info["K"] == 4
    assert 0.9 <= info["positive_share"] <= 1 or info["sigma"] == 0.1
    helped = subprocess.run([sys.executable, "-m", "mrd_unlearning.cli", "score", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "weight_mrd" in helped.stdout and "--sigma" in helped.stdout
    bad = subprocess.run(cmd[:-1] + ["--max-length", "5", "--quiet"], capture_output=True, text=True)
    assert bad.returncode == 2 and "forget25.json:1:" in bad.stderr and "longer than --max-length 5" in bad.stderr


LOCAL_SPLITS = {"forget": "to_forget.jsonl", "retain": "keep.jsonl", "holdout": "never_seen.jsonl",
                "forget_eval": "to_forget_eval.jsonl", "retain_eval": "keep_eval.jsonl"}


def _local_project(tmp_path, overlay: str):
    """A TOFU-format folder with its own file names, no `full` and no utility splits (the
    smoke study's synthetic data, renamed), and a project whose config points at it."""
    from mrd_unlearning.config import validate_config
    from mrd_unlearning.stages import prepare_data

    generated = tmp_path / "generated"
    smoke = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    prepare_data(str(generated), data_cfg=validate_config(smoke)["data"], seed=0)
    mine = tmp_path / "my_data"
    mine.mkdir()
    sources = {"forget": "forget25.json", "retain": "retain75.json", "holdout": "holdout25.json",
               "forget_eval": "forget25_perturbed.json", "retain_eval": "retain_perturbed.json"}
    for role, name in LOCAL_SPLITS.items():
        (mine / name).write_bytes((generated / sources[role]).read_bytes())
    (tmp_path / "project").mkdir()
    work = copy_project(tmp_path / "project")
    splits = ", ".join(f"{k}: {v}" for k, v in LOCAL_SPLITS.items())
    (work / "config" / "local.yaml").write_text(
        f"name: smoke_local\nreplicates: [0]\ndata: {{source: local, local: {{path: {mine}, splits: {{{splits}}}}}}}\n"
        f"unlearning: {{algorithms: [ga], samplers: [uniform, mrd_refresh], seeds: [0]}}\n"
        f"robustness: {{enabled: false}}\n{overlay}")  # the loader is under test here; the smoke study attacks
    return work


def test_a_local_folder_runs_every_stage_and_reproduces_the_smoke_studys_numbers(smoke_run, tmp_path):
    """The smoke study's data, as a local folder with its own split names, run from scratch in a
    fresh project: every stage runs, and every per-replicate stage that draws random numbers
    (fine-tuning, MRD's perturbations, both ground truths, evaluation, the samplers and
    unlearning) writes the same numbers, to the last bit, as the smoke study's replicate 0 did:
    same seed, same machine, same numbers; and the local loader hands the stages the same data
    as the generator."""
    work = _local_project(tmp_path, "")
    run_snakemake(work, "config/local.yaml")
    out = work / "results" / "smoke_local"
    assert len(pd.read_csv(out / "mrd/scores.csv")) == 6
    target = json.loads((out / "eval/rep0/target.json").read_text())
    assert target["model_utility_parts"] == 3 and target["utility_splits"] == ["retain"]
    report = (out / "report.md").read_text()
    assert "a local folder (`to_forget.jsonl`" in report and "no real_authors or world_facts splits" in report
    openunlearning = json.loads((out / "eval/rep0/target_TOFU_EVAL.json").read_text())
    assert {"forget_Q_A_Prob", "forget_truth_ratio", "forget_quality", "model_utility"} <= set(openunlearning)
    assert len(pd.read_csv(out / "tables/unlearning.csv")) == 2  # GA x 2 samplers, seed 0
    assert "Nothing to be done" in run_snakemake(work, "config/local.yaml", "-n").stdout

    first = smoke_run[1]
    rerun = sorted(str(p.relative_to(out)) for folder in ("mrd/rep0", "eval/rep0", "unlearning/rep0/ga")
                   for p in (out / folder).rglob("*") if p.suffix in (".csv", ".json"))
    assert {"mrd/rep0/mrd.csv", "mrd/rep0/update_count.csv", "mrd/rep0/update_count_sgd.csv",
            "eval/rep0/target_samples.csv", "eval/rep0/retain.json",
            "unlearning/rep0/ga/mrd_refresh/seed0/eval_budget_samples.csv"} <= set(rerun)
    for name in rerun:
        assert_same_numbers(first, out, name)


def test_a_sample_too_long_for_the_model_stops_the_study_before_any_training(tmp_path):
    work = _local_project(tmp_path, "model: {max_length: 24}\n")
    done = run_snakemake(work, "config/local.yaml", check=False)
    assert done.returncode != 0
    out = work / "results" / "smoke_local"
    log = (out / "logs" / "check_lengths.log").read_text()
    assert re.search(r"longer than model.max_length=24.*\n\s+\S+to_forget\.jsonl:1 \(forget, answer\): \d+ tokens", log)
    assert not (out / "models").exists()  # no fine-tuning started


def test_text_smoke_study_end_to_end_on_a_made_up_muse(tmp_path):
    """config/smoke_text.yaml on a made-up MUSE-News in its repository layout (text rows cut from
    its verbmem excerpts and privleak articles), every stage, MUSE's own evaluation beside the
    study's (the synthetic text form differs only in its data stage, tested on its own)."""
    from mrd_unlearning.data.benchmarks import write_example

    work = copy_project(tmp_path)
    write_example("muse_news", work / "muse_example", n_people=9, seed=0, repository_layout=True)
    (work / "config" / "muse_example.yaml").write_text(yaml.safe_dump({"data": {
        "source": "benchmark", "retain_eval_size": 6,
        "benchmark": {"name": "muse_news", "paths": {"muse_news": "muse_example"},
                      "splits": {"forget": "muse_news:verbmem/forget", "retain": "muse_news:privleak/retain",
                                 "holdout": "muse_news:privleak/holdout"},
                      "documents": {"forget": 3, "retain": 3, "holdout": 3}, "document_words": 12,
                      "chunk_words": 6, "eval_rows": 3}}}))
    run_snakemake(work, "config/smoke_text.yaml", "config/muse_example.yaml")
    out = work / "results" / "smoke_text"
    scores = pd.read_csv(out / "mrd/scores.csv")
    assert len(scores) == 6 and scores.group.nunique() == 3  # 3 excerpts, 2 pieces each
    target = json.loads((out / "eval/rep0/target.json").read_text())
    assert target["data_kind"] == "text" and "forget_quality" not in target and target["model_utility_parts"] == 2
    assert target["benchmark"] == "muse_news" and 0 <= target["verbmem_f"] <= 100 and -100 <= target["privleak"]
    runs = pd.read_csv(out / "tables/unlearning.csv")
    assert len(runs) == 2 and runs.forget_quality.isna().all() and runs.forget_rouge.notna().all()
    authors = pd.read_csv(out / "tables/author_outcomes.csv")  # text: each group's verbatim ROUGE-L
    assert (authors.metric == "forget_rouge").all() and authors.outcome.between(0, 1).all()
    assert len(authors) == len(runs) * pd.read_csv(out / "mrd/scores.csv").group.nunique()
    report = (out / "report.md").read_text()
    assert "as plain-text rows" in report and "VerbMem" in report and "no forget quality" in report
    assert "## The benchmark's own evaluation (MUSE-News)" in report and "| npo_rt / uniform (1 run) |" in report
    assert {"verbmem_f", "knowmem_forget_f", "knowmem_retain_f"} <= set(runs)
    openunlearning = json.loads((out / "unlearning/rep0/npo_rt/rum@learning_confidence/seed0/eval_budget_TOFU_EVAL.json").read_text())
    assert {"forget_Prob", "forget_verbmem_ROUGE", "privleak"} <= set(openunlearning)
