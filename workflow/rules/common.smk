# Paths, settings and input functions shared by the rules (rule files hold rules only).

CONDA_ENV = "../../envs/mrd.yaml"  # used with --sdm conda

# The replicates that run the MRD variant study (mrd.validation.replicates: first | all).
VARIANT_REPLICATES = (
    REPLICATES[:1]
    if config["mrd"]["validation"]["replicates"] == "first"
    else REPLICATES
)
RUN_GROUPS = [(a, s) for a in UL["algorithms"] for s in UL["samplers"]]
# The statistics settings that each pooled step reads, so that changing another (the calibration's) reruns
# only what uses it.
STATISTICS = config["statistics"]
VALIDATION_STATISTICS = {
    k: STATISTICS[k] for k in ("bootstrap_resamples", "alpha", "min_groups")
}
COMPARISON_STATISTICS = {k: STATISTICS[k] for k in ("alpha", "power", "paper_gains")}
# The variant study's settings: which replicates run it is not one of them.
MRD_VARIANT_CFG = {
    **config["mrd"],
    "validation": {
        k: v for k, v in config["mrd"]["validation"].items() if k != "replicates"
    },
}


def log_file(name):
    """Each job's output and traceback (`--show-failed-logs` prints it on failure)."""
    return f"{R}/logs/{name}.log"


def benchmark_file(name):
    """Each job's wall time and peak memory (`make timing` summarises them)."""
    return f"{R}/benchmarks/{name}.tsv"


def in_study(wc, path):
    """A path of this job's study, for input functions (their return values are not formatted)."""
    return f"results/{wc.study}/{path}"


def in_replicate(wc, path):
    """`path` with {r} standing for this job's replicate, in this job's study."""
    return in_study(wc, path.format(r=wc.replicate))


def per_replicate(wc, inputs, replicates=None):
    """For aggregate rules: {f"{key}_{r}": path of replicate r} for every replicate and every
    key -> path (with {r}) of `inputs`; the scripts find them by these names."""
    return {
        f"{key}_{r}": in_study(wc, path.format(r=r))
        for r in replicates or REPLICATES
        for key, path in inputs.items()
    }


def scores_inputs(wc):
    per_sample = {
        "mrd": "mrd/rep{r}/mrd.csv",
        "baselines": "mrd/rep{r}/baselines.csv",
        "retain": "eval/rep{r}/retain_samples.csv",
        "target": "models/rep{r}/target",  # its learning events, recorded during fine-tuning
        **{truth: f"mrd/rep{{r}}/{truth}.csv" for truth in GROUND_TRUTHS},
    }
    return {
        **per_replicate(wc, per_sample),
        **per_replicate(
            wc, {"variants": "mrd/rep{r}/variants.csv"}, VARIANT_REPLICATES
        ),
    }


def variant_study_inputs(wc):
    study = {
        "variants": "mrd/rep{r}/variants.csv",
        "stability": "mrd/rep{r}/stability.csv",
    }
    return per_replicate(wc, study, VARIANT_REPLICATES)


def model_settings():
    """What every model-loading job needs; changing it reruns them all."""
    return {
        "max_length": config["model"]["max_length"],
        "device": config["device"],
        "precision": config["model"]["precision"],
    }


# Per model job (fine-tuning, scoring, unlearning, evaluation): GPUs (0 on CPU) and memory. A
# cluster profile can override any rule's resources (profiles/slurm/config.yaml).
GPUS = config["resources"]["gpu"]
MODEL_MEM_MB = config["resources"]["mem_mb"]
# With GPUs, the memory and cost plan (plan.py, `make plan`): a study with a model job that does
# not fit its GPUs is refused here, before any job runs, and every model job's host memory and
# time limit come from the plan.
PLAN = study_plan(config) if GPUS else None
refuse_unfit(config, PLAN or {})


# The plan's name for one job of a model rule: the wildcards that change its cost.
PLAN_VARIANTS = {
    "finetune": "{role}",
    "ground_truth": "{truth}",
    "unlearn": "{algorithm}/{sampler}",
    "evaluate_finetuned": "target+retain",
}


def planned(name, key, default):
    """A model rule's resource `key` (mem_mb, runtime): from the plan with GPUs, else `default`."""
    if PLAN is None:
        return default
    variant = PLAN_VARIANTS.get(name, "")
    return lambda wc: job_resources(
        PLAN, wc.study, name, variant.format(**dict(wc.items()))
    )[key]


# Ground truths of difficulty: the unlearning runs' optimizer and learning rate, and
# plain SGD beside it (difficulty is only defined together with an optimizer).
GROUND_TRUTHS = {
    "update_count": {
        "optimizer": config["unlearning"]["optimizer"],
        "lr": config["unlearning"]["lr"],
    },
    "update_count_sgd": {"optimizer": "sgd", "lr": config["ground_truth"]["sgd_lr"]},
}


def finetune_base(wc):
    """The model fine-tuning starts from (model.source): the tiny Llama with the study's
    tokenizer, SmolLM2 converted once from its GGUF file, or a pretrained model by hub id or
    local path (model.name_or_path, read by the job itself)."""
    source = config["model"]["source"]
    if source == "tiny":
        return {"base": in_study(wc, "tokenizer")}
    if source == "smollm2_gguf":
        return {"base": in_study(wc, "base_model")}
    return {}


def unlearn_inputs(wc):
    """Uniform runs do not depend on MRD in the DAG; mrd_refresh also needs the estimator and
    its sigma, to recompute MRD; a sampler driven by another score needs the scores."""
    inputs = {
        "model_dir": in_replicate(wc, "models/rep{r}/target"),
        "data_dir": in_study(wc, "data"),
        "retain_summary_json": in_replicate(wc, "eval/rep{r}/retain.json"),
        "retain_samples_csv": in_replicate(wc, "eval/rep{r}/retain_samples.csv"),
    }
    if wc.sampler != "uniform":
        inputs["mrd_csv"] = in_replicate(wc, "mrd/rep{r}/mrd.csv")
    # driven by another difficulty score (mrd@loss): the scores, read beside the model
    if "@" in wc.sampler:
        inputs["baselines_csv"] = in_replicate(wc, "mrd/rep{r}/baselines.csv")
    if wc.sampler == "mrd_refresh":
        inputs["mrd_json"] = in_replicate(wc, "mrd/rep{r}/mrd.json")
    return inputs


def unlearn_settings(wc):
    """The run's hyper-parameters; tau only where the sampler uses it."""
    keys = [
        "steps",
        "epochs",
        "level_cap",
        "batch_size",
        "grad_accumulation",
        "lr",
        "optimizer",
        "log_every",
    ]
    keys += ["tau"] if wc.sampler != "uniform" else []
    keys += ["refresh_every"] if wc.sampler == "mrd_refresh" else []
    # keep_models none, level_every null: the params as before they existed
    keys += ["keep_models"] if UL["keep_models"] != "none" else []
    keys += ["level_every"] if UL["level_every"] is not None else []
    settings = {k: UL[k] for k in keys}
    if settings["epochs"] is not None:
        del settings["steps"]  # TOFU's recipe: passes over the forget set, not steps
    elif isinstance(settings["steps"], dict):
        settings["steps"] = {
            wc.algorithm: settings["steps"][wc.algorithm]
        }  # its own budget
    return settings


def run_groups(wc):
    """Every (algorithm, sampler) folder of every replicate: one job runs all seeds."""
    return [
        in_study(wc, f"unlearning/rep{r}/{a}/{s}")
        for r in REPLICATES
        for a, s in RUN_GROUPS
    ]


# The attacks on forgetting (`robustness` of the config): {} when they are off.
ROBUSTNESS = config["robustness"] if config["robustness"]["enabled"] else {}


def robustness_inputs(wc):
    """Per replicate: the evaluations recovery is measured against and the controls' attacks."""
    files = {
        "target_samples": "eval/rep{r}/target_samples.csv",
        "retain_samples": "eval/rep{r}/retain_samples.csv",
        "controls": "robustness/rep{r}/controls.csv",
    }
    return per_replicate(wc, files)


def robustness_tables(wc):
    """What the report and the samples page read of the attacks (none when they are off)."""
    if not ROBUSTNESS:
        return {}
    names = [
        "recovery_runs",
        "recovery_tiers",
        "recovery_difficulty",
        "robustness",
        "robustness_calibration",
    ]
    tables = {name: in_study(wc, f"tables/{name}.csv") for name in names}
    tables["recovery_samples"] = in_study(wc, "tables/recovery_samples.csv")
    tables["recovery_figure"] = in_study(wc, "figures/recovery_tiers.png")
    return tables


def report_inputs(wc):
    """Per replicate: what the report reads of the fine-tuned models and of MRD."""
    files = {
        "target_eval": "eval/rep{r}/target.json",
        "retain_eval": "eval/rep{r}/retain.json",
        "target_finetune": "models/rep{r}/target",
        "retain_finetune": "models/rep{r}/retain",
        "mrd_meta": "mrd/rep{r}/mrd.json",
    }
    return {**per_replicate(wc, files), **robustness_tables(wc)}


def verdict_inputs(wc):
    """Per replicate: what the verdicts read of the fine-tuned models' evaluations and of MRD."""
    files = {
        "target_eval": "eval/rep{r}/target.json",
        "retain_eval": "eval/rep{r}/retain.json",
        "mrd_meta": "mrd/rep{r}/mrd.json",
    }
    return per_replicate(wc, files)


def retain_summaries(wc):
    return per_replicate(wc, {"retain": "eval/rep{r}/retain.json"})


def retain_samples(wc):
    """The retain model's per-sample evaluation of every replicate: what an unlearned model's
    forget set is compared with."""
    return per_replicate(wc, {"retain_samples": "eval/rep{r}/retain_samples.csv"})


def samples_page_inputs(wc):
    """The first replicate's target and retain evaluations and its runs of every algorithm x
    sampler (in RUN_GROUPS' order): what the browser shows each model generate; and its
    ground-truth runs' likelihood curves (in GROUND_TRUTHS' order)."""
    first = REPLICATES[0]
    return {
        "target_samples_csv": in_study(wc, f"eval/rep{first}/target_samples.csv"),
        "retain_samples_csv": in_study(wc, f"eval/rep{first}/retain_samples.csv"),
        "run_dirs": [
            in_study(wc, f"unlearning/rep{first}/{a}/{s}") for a, s in RUN_GROUPS
        ],
        "curves_csvs": [
            in_study(wc, f"mrd/rep{first}/{t}_curves.csv") for t in GROUND_TRUTHS
        ],
        **(
            {"recovery_samples_csv": in_study(wc, "tables/recovery_samples.csv")}
            if ROBUSTNESS
            else {}
        ),
    }
