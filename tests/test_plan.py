"""The memory and cost plan (plan.py) against hand calculations, the refusal of a study that does
not fit, the `make plan` entry point, and the ground truth's subsample and in-memory resets."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mrd_unlearning.config import load_config, validate_config
from mrd_unlearning.ground_truth import required_updates, subsample
from mrd_unlearning.mrd import score_loglik
from mrd_unlearning.plan import PlanError, architecture, refuse_unfit, study_jobs, study_plan

from .conftest import ROOT, tiny_model

LLAMA2_7B_PARAMETERS = 6_738_415_616  # Llama-2-7b: 32 x 202,383,360 per layer + 2 x 32000 x 4096 + 4096


@pytest.fixture(scope="module")
def paper():
    return load_config(ROOT / "config" / "paper.yaml")


def _jobs(cfg):
    arch = architecture(cfg["model"], cfg["tokenizer"]["vocab_size"])
    data = {**cfg["data"], "tofu": {**cfg["data"]["tofu"], "forget_split": "forget10"}}
    return arch, {(j.rule, j.variant): j for j in study_jobs(cfg, data, arch)}


def test_7b_training_state_is_16_bytes_per_parameter_and_fsdp_divides_it(paper):
    single = validate_config({**paper, "finetune": {**paper["finetune"], "processes": 1, "strategy": "ddp"}})
    arch, jobs = _jobs(single)
    assert arch.parameters == LLAMA2_7B_PARAMETERS == arch.trainable
    memory = jobs[("finetune", "target")].memory_gb
    by_hand = {"weights": 4 * LLAMA2_7B_PARAMETERS / 1e9, "gradients": 4 * LLAMA2_7B_PARAMETERS / 1e9,
               "optimizer": 8 * LLAMA2_7B_PARAMETERS / 1e9}  # float32 master weights, gradients, Adam m and v
    for key, value in by_hand.items():
        assert memory[key] == pytest.approx(value, abs=1e-3)
    assert sum(by_hand.values()) == pytest.approx(107.8, abs=0.1)
    assert jobs[("finetune", "target")].peak_gb > 0.9 * 80  # one process cannot fine-tune 7B on an 80 GB GPU
    _, sharded = _jobs(paper)  # 4 processes, fsdp
    assert sharded[("finetune", "target")].memory_gb["optimizer"] == pytest.approx(by_hand["optimizer"] / 4, abs=1e-3)
    assert sharded[("finetune", "target")].gpus == 4 and sharded[("finetune", "target")].fits
    # NPO's frozen reference holds bf16 weights (2 bytes) beside the float32 master weights; GA needs none
    assert sharded[("unlearn", "npo/mrd")].memory_gb["reference"] == pytest.approx(2 * LLAMA2_7B_PARAMETERS / 1e9,
                                                                                     abs=1e-3)
    assert "reference" not in sharded[("unlearn", "ga/mrd")].memory_gb
    # the ground truth's reset copy in host memory (paper.yaml) leaves the GPU; on the device it costs 4 bytes/param
    assert "reset copy" not in sharded[("ground_truth", "update_count")].memory_gb
    on_device = validate_config({**paper, "ground_truth": {**paper["ground_truth"], "reset_copy": "device"}})
    assert _jobs(on_device)[1][("ground_truth", "update_count")].memory_gb["reset copy"] == pytest.approx(
        4 * LLAMA2_7B_PARAMETERS / 1e9, abs=1e-3)


def test_lora_trains_adapters_only_and_subsampled_ground_truth_costs_less(paper):
    lora = validate_config({**paper, "finetune": {**paper["finetune"], "strategy": "ddp"},
                            "model": {**paper["model"], "lora": {"r": 8}}})
    arch, jobs = _jobs(lora)
    assert arch.trainable == 32 * 4 * 8 * (4096 + 4096)  # q, k, v, o of 32 layers: r x (in + out) each
    assert "reference" not in jobs[("unlearn", "npo/mrd")].memory_gb  # the adapters switched off
    half = validate_config({**paper, "ground_truth": {**paper["ground_truth"], "max_samples": 200}})
    full_cost = _jobs(paper)[1][("ground_truth", "update_count")].gpu_hours
    assert _jobs(half)[1][("ground_truth", "update_count")].gpu_hours == pytest.approx(full_cost / 2)


def test_a_study_that_does_not_fit_is_refused_with_what_to_change(paper):
    small = validate_config({**paper, "resources": {**paper["resources"], "gpu_mem_gb": 80}})
    plan = study_plan(small)
    with pytest.raises(PlanError) as err:
        refuse_unfit(small, plan)
    message = str(err.value)
    for text in ("paper_forget10: unlearn npo/mrd", "72.0 GB per GPU", "LoRA", "gradient_checkpointing",
                 "resources.gpu_mem_gb"):
        assert text in message
    refuse_unfit(paper, study_plan(paper))  # the paper's H200 profile fits


@pytest.mark.e2e
def test_make_plan_ends_with_json_and_snakemake_refuses_before_any_job(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mrd_unlearning.plan", "--config", "config/paper.yaml",
                           "--simulations", "0"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["fits"] and summary["max_gpu_mem_gb"] <= summary["usable_gb"] and summary["gpu_hours"] > 0
    assert "| unlearn | npo_rt/mrd_curriculum |" in done.stdout
    (tmp_path / "h100.yaml").write_text("resources: {gpu_mem_gb: 80}\n")
    refused = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile",
                              "config/paper.yaml", str(tmp_path / "h100.yaml")], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "does not fit" in refused.stdout + refused.stderr
    assert "Job stats" not in refused.stdout + refused.stderr  # refused while parsing: nothing was planned


def test_ground_truth_subsample_is_seeded_and_resets_from_host_match_device(tokenizer, forget_encoded):
    picks = subsample(400, 200, seed=0)
    assert picks == subsample(400, 200, seed=0) and len(set(picks)) == 200 and picks == sorted(picks)
    assert picks != subsample(400, 200, seed=1) and subsample(40, 200, seed=0) is None
    model = tiny_model(tokenizer)
    level = score_loglik(model, forget_encoded, 8, tokenizer.pad_token_id, "cpu") - 0.3
    kw = dict(optimizer="adamw", lr=1e-2, max_steps=20, pad_id=tokenizer.pad_token_id, device="cpu", desc=None,
              sample_ids=[1, 3, 4])
    device = required_updates(model, forget_encoded, level, reset_copy="device", **kw)
    host = required_updates(model, forget_encoded, level, reset_copy="host", **kw)
    assert device.sample_id.tolist() == [1, 3, 4]
    assert device.equals(host) and (device.update_count > 0).all()
    assert np.array_equal(level + 0.3, score_loglik(model, forget_encoded, 8, tokenizer.pad_token_id, "cpu"))


def test_disk_per_rule_counts_checkpoints_and_keep_models(paper):
    """A 7B checkpoint (float32 master weights) is 27 GB: fine-tuning writes one per job; unlearned
    models are written only as unlearning.keep_models says (none, the first seed's, all)."""
    checkpoint = 4 * LLAMA2_7B_PARAMETERS / 1e9
    _, jobs = _jobs(paper)
    assert jobs[("finetune", "target")].disk_gb == pytest.approx(checkpoint, abs=1e-3)
    assert jobs[("unlearn", "npo/mrd")].disk_gb == 0  # keep_models: none (the default)
    seeds = len(paper["unlearning"]["seeds"])
    for keep, kept in (("first_seed", 1), ("all", seeds)):
        cfg = validate_config({**paper, "unlearning": {**paper["unlearning"], "keep_models": keep}})
        assert _jobs(cfg)[1][("unlearn", "npo/mrd")].disk_gb == pytest.approx(kept * checkpoint, abs=1e-3)
    plan = study_plan(validate_config({**paper, "unlearning": {**paper["unlearning"], "keep_models": "all"}}))
    runs = sum(j.jobs for jobs in plan.values() for j in jobs if j.rule == "unlearn")
    from mrd_unlearning.plan import summary
    assert summary(paper, plan)["disk_gb"] == pytest.approx(
        summary(paper, study_plan(paper))["disk_gb"] + runs * seeds * checkpoint, rel=1e-4)


STATISTICS = dict(alpha=0.05, power=0.8, spread_threshold=2.0, bootstrap_resamples=100, smallest_rho=0.3, min_groups=5,
                  paper_gains={"forget_quality": 0.0112, "model_utility": 0.0272}, calibration={"c1_planted_spread": 4.0})


def test_power_plan_knows_what_a_tiny_design_cannot_detect():
    """5 groups of 4 in 2 replicates x 2 seeds: the sign-flip test over 5 groups cannot give p
    below 0.05 (its floor is 2/32), nor C4's over 4 pairs below Holm's 0.05/2 (2/16): by hand,
    no effect is detectable and nothing is ever called 'supported'. The pairs a gain of the
    paper's size would need, simulated directly with the exact test at Holm's level, give it
    80% power."""
    from mrd_unlearning import calibration as cal
    from mrd_unlearning.statistics import sign_flip_test

    design = cal.Design(groups=np.repeat(np.arange(5), 4).astype(str), replicates=2, seeds=2, algorithms=("ga",),
                        weighted=("mrd",), n_characteristics=2)
    table = cal.power_plan(design, STATISTICS, simulations=6, progress=False).set_index("claim")
    for claim in ("C2", "C4"):
        assert table.loc[claim, "false_verdict_rate"] == 0 and table.loc[claim, "mde"] == float("inf")
        assert all(point.endswith(": 0%") for point in table.loc[claim, "power_grid"].split(", "))
    assert table.loc["C4", "units"] == 4
    needed = dict(part.split(": ") for part in table.loc["C4", "units_needed"].split(", "))
    n = int(needed["forget_quality"])
    rng = np.random.default_rng(0)  # SD of a pair's difference: the default, the gain itself
    hits = [sign_flip_test(rng.normal(1.0, 1.0, n), alpha=0.05 / 2)["p_value"] < 0.05 / 2 for _ in range(300)]
    assert 0.72 <= np.mean(hits) <= 0.9
    text = cal.render_power_plan("tiny", design, table.reset_index(), STATISTICS)
    assert "within these 5 groups" not in text and "cannot detect the smallest interesting effect" in text


def test_power_plan_interpolates_the_detectable_effect_on_its_grid():
    from mrd_unlearning.calibration import _interpolated_mde

    assert _interpolated_mde([0.1, 0.3, 0.5], [0.2, 0.6, 1.0], 0.8) == pytest.approx(0.4)
    assert _interpolated_mde([0.1, 0.3], [0.9, 1.0], 0.8) == 0.1
    assert _interpolated_mde([0.1, 0.3], [0.1, 0.5], 0.8) == float("inf")


def test_planned_groups_follow_the_configuration(data_dir):
    """TOFU: k questions of each author of the split; synthetic: the forget people's facts, and
    the generator's numeric known factors counted in C3's family."""
    import pandas as pd

    from mrd_unlearning.calibration import SYNTHETIC_KNOWN_FACTORS, design_from_config

    cfg = load_config(ROOT / "config" / "tofu_smollm2.yaml")
    design = design_from_config(cfg, cfg["data"])
    assert len(design.groups) == 40 and len(set(design.groups)) == 10 and design.replicates == 2
    assert design.weighted == ("mrd",) and design.algorithms == ("ga", "npo")
    factors = pd.read_csv(data_dir / "factors.csv").drop(columns="sample_id")
    assert SYNTHETIC_KNOWN_FACTORS == sum(pd.api.types.is_numeric_dtype(t) for t in factors.dtypes)


def test_make_plan_prints_the_power_of_the_design():
    done = subprocess.run([sys.executable, "-m", "mrd_unlearning.plan", "--config", "config/smoke.yaml",
                           "--simulations", "4"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "## Power of smoke" in done.stdout and "within these 2 groups" in done.stdout
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    primary = {f"{c} primary {k}" for c in ("C4a", "C4b", "C4") for k in ("power", "seeds needed", "detectable")}
    assert set(summary["power"]["smoke"]) == {"C1", "C2", "C3", "C4", "C4 unit"} | primary
    # the primary comparison (ga mrd_refresh - uniform) over 2 models x 2 seeds, with no SD known: 1 smallest effect
    assert "C4's primary comparison (`statistics.c4`): ga `mrd_refresh` against uniform over 4 seed pairs" in done.stdout
    assert 0 <= summary["power"]["smoke"]["C4a primary power"] < 0.5  # 4 pairs at one SD: far from 80%
    assert summary["power"]["smoke"]["C4a primary seeds needed"] >= 4
    # 4 pairs: the sign-flip test's smallest p, 2/2^4, lies above alpha: no effect of any size is detectable
    assert summary["power"]["smoke"]["C4a primary detectable"] == "none of any size"
    # 2 people cannot be C4's unit (their test's floor is 2/4): the plan pairs runs and says why
    assert summary["power"]["smoke"]["C4 unit"] == "pair" and "C4's unit: run pairs. With the group" in done.stdout
    # units on every grid point; 2 replicates x 2 seeds = 4 pairs: 2/2^4 = 0.125 lies above Holm's first level
    assert "spread 4 (planted; the threshold is 2)" in done.stdout and "1x the paper's gains: " in done.stdout
    assert "smallest two-sided p is 2/2^4 = 0.125, above Holm's first level" in done.stdout
    assert "the power is 0 over the whole grid" in done.stdout


def test_units_needed_are_the_fewest_that_reach_the_power_even_where_scipy_gives_nan():
    """At alpha 0.05 / 20 the noncentral t's tail is NaN for some sizes (128 units at 0.5 SD): the
    search must still return the first size that reaches 80%, and rise as the effect shrinks."""
    from mrd_unlearning.calibration import _units_needed
    from mrd_unlearning.statistics import t_test_power

    level = 0.05 / 20
    needed = [_units_needed(1 / ratio, level, 0.8) for ratio in (0.5, 1, 2, 3, 5)]
    assert needed == sorted(needed) and needed[0] == 10  # 2 / 2^10 is the first floor below 0.0025 (2 SD: the t-test needs fewer)
    for ratio, n in zip((2, 3, 5), needed[2:]):
        assert t_test_power(1 / ratio, n, level) >= 0.8 > t_test_power(1 / ratio, n - 1, level)


def test_plan_of_a_local_folder_counts_its_files_and_ends_with_its_total(data_dir, tmp_path, capsys):
    """`make plan` on data.source local: the rows of the folder's own files (not TOFU's split
    sizes), a grand total line before the JSON, and a remedy beside every job that does not fit."""
    import yaml

    from mrd_unlearning.plan import data_sizes, main

    splits = {"forget": "forget25.json", "retain": "retain75.json", "holdout": "holdout25.json",
              "forget_eval": "forget25_perturbed.json", "retain_eval": "retain_perturbed.json"}
    local = {"name": "mine", "data": {"source": "local", "retain_eval_size": 5,
                                      "local": {"path": str(data_dir), "splits": splits}}}
    cfg = validate_config(local)
    rows = {role: sum(1 for line in (data_dir / name).read_text().splitlines() if line.strip())
            for role, name in splits.items()}
    wrong = len(json.loads((data_dir / splits["forget_eval"]).read_text().splitlines()[0])["perturbed_answer"])
    assert data_sizes(cfg["data"]) == {"full": rows["forget"] + rows["retain"], "forget": rows["forget"],
                                       "retain": rows["retain"], "retain_eval": 5, "utility": 0, "wrong_answers": wrong}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({**local, "resources": {"gpu": 1, "gpu_mem_gb": 0.001}}))
    main(["--config", str(tmp_path / "mine.yaml"), "--simulations", "0"])
    *table, total, last = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(last)
    assert total == (f"Total: {summary['jobs']} model jobs in 1 study, {summary['gpu_hours']:.2f} GPU-hours, "
                     f"peak {summary['max_gpu_mem_gb']:.2f} GB per GPU of {summary['usable_gb']:.2f} usable (does NOT "
                     f"fit: see the remedies above), {summary['disk_gb']:.2f} GB of checkpoints on disk")
    unfit = [line for line in table if line.startswith("- ")]
    assert len(unfit) == sum(line.count("| NO |") for line in table if line.startswith("| ") and "**study**" not in line)
    assert any(line.startswith("- finetune") and "finetune.strategy fsdp" in line for line in unfit)
    assert all("resources.gpu_mem_gb (now 0.001)" in line for line in unfit)
    with pytest.raises(Exception, match=r"config key 'data.local.splits.forget': no file .*missing/forget25.json"):
        data_sizes({**cfg["data"], "local": {**cfg["data"]["local"], "path": str(tmp_path / "missing")}})


def test_a_cpu_study_is_planned_in_ram_and_measured_core_hours(tmp_path, capsys, monkeypatch):
    """resources.gpu 0: no GPU words; RAM per job, and core-hours from the last run's benchmark
    files (jobs x mean seconds x threads), or a plain 'no run measured yet'."""
    import pandas as pd

    from mrd_unlearning import plan

    monkeypatch.chdir(ROOT)
    plan.main(["--config", "config/smoke.yaml", "--simulations", "0"])
    out = capsys.readouterr().out.strip().splitlines()
    assert not [line for line in out if "GPU-h" in line or "GPUs/job" in line or "per GPU" in line]
    assert "no run measured yet" in out[-2] and json.loads(out[-1])["core_hours"] is None
    bench = tmp_path / "smoke" / "benchmarks"
    for rule, name, seconds in (("finetune", "rep0_target", 30.0), ("finetune", "rep1_target", 50.0),
                                ("unlearn", "rep0_ga_uniform", 12.0)):
        (bench / rule).mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"s": [seconds], "max_rss": [100.0]}).to_csv(bench / rule / f"{name}.tsv", sep="\t", index=False)
    cfg = plan.study_config(ROOT / "config" / "smoke.yaml")
    jobs = plan.study_plan(cfg)["smoke"]
    table, totals = plan.render_cpu(cfg, {"smoke": jobs}, results=tmp_path)
    expected = sum(j.jobs * {"finetune": 40.0, "unlearn": 12.0}.get(j.rule, 0.0) * cfg["threads"] / 3600 for j in jobs)
    assert totals["core_hours"] == pytest.approx(expected, abs=1e-3) and expected > 0
    rows = [r.split("|") for r in table.splitlines() if r.startswith("| ") and not r.startswith("| rule")]
    assert {r[7].strip() for r in rows if r[1].strip() == "finetune"} == {"40"}  # the mean of 30 s and 50 s
    assert {r[7].strip() for r in rows if r[1].strip() == "mrd"} == {"not run yet"}
    assert "core-hours in the last run" in plan.cpu_total_line(totals)
