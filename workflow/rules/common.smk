# Paths shared by the rules, and the per-run helpers.

CONDA_ENV = "../../envs/mrd.yaml"  # used with --sdm conda


def run_dir(algorithm, sampler, seed):
    return f"{R}/unlearning/{algorithm}/{sampler}/seed{seed}"


def run_eval(algorithm, sampler, seed):
    return f"{R}/eval/unlearned/{algorithm}/{sampler}/seed{seed}.json"


def in_study(wc, path):
    """A path of this job's study, for input functions (their return values are not formatted)."""
    return f"results/{wc.study}/{path}"


def model_settings():
    """What every model-loading job needs; changing it reruns them all."""
    return {"max_length": config["model"]["max_length"], "device": config["device"], "dtype": config["model"]["dtype"]}


# Per model job (fine-tuning, scoring, unlearning, evaluation): GPUs (0 on CPU) and memory. A
# cluster profile can override any rule's resources (profiles/slurm/config.yaml).
GPUS = config["resources"]["gpu"]
MODEL_MEM_MB = config["resources"]["mem_mb"]


# Ground truths of difficulty (STUDY 4): the unlearning runs' optimizer and learning rate, and
# plain SGD beside it (difficulty is only defined together with an optimizer).
GROUND_TRUTHS = {
    "update_count": {"optimizer": config["unlearning"]["optimizer"], "lr": config["unlearning"]["lr"]},
    "update_count_sgd": {"optimizer": "sgd", "lr": config["ground_truth"]["sgd_lr"]},
}


# What each rule's results depend on in the package: a digest of that source, passed as a param,
# so that a change to the package reruns exactly the rules whose code it touches (the rules'
# scripts are thin adapters; Snakemake's own code trigger covers them).
import mrd_unlearning.data.loader
import mrd_unlearning.data.synthetic
import mrd_unlearning.report
import mrd_unlearning.stages  # imports every module a stage uses
from mrd_unlearning.stages import source_digest

# (modules under their package name: `report` is Snakemake's own function here)
pkg = mrd_unlearning
stages = pkg.stages

CODE = {
    "prepare_data": source_digest(stages.prepare_data, pkg.data.synthetic, pkg.data.loader),
    "tokenizer": source_digest(stages.build_tokenizer, pkg.models.train_tokenizer),
    "base_model": source_digest(stages.convert_base_model, pkg.models.convert_gguf),
    "finetune": source_digest(stages.finetune_model, stages._finetune_process, stages._base_model, pkg.models,
                              pkg.training),
    "evaluate": source_digest(stages.evaluate_model, pkg.evaluation, pkg.metrics, pkg.models),
    "mrd": source_digest(stages.score_mrd, pkg.mrd, pkg.models),
    "mrd_variants": source_digest(stages.mrd_variants, pkg.mrd, pkg.validation.estimator_study, pkg.models),
    "baselines": source_digest(stages.baseline_scores, pkg.baselines, pkg.models),
    "ground_truth": source_digest(stages.ground_truth, pkg.ground_truth, pkg.training, pkg.unlearning.gradient_ascent,
                                  pkg.models),
    "scores": source_digest(stages.collect_scores),
    "mrd_validation": source_digest(stages.mrd_validation, pkg.validation),
    "mrd_figures": source_digest(stages.mrd_figures, pkg.figures),
    "unlearn": source_digest(stages.unlearn_run, stages.unlearning_steps, pkg.unlearning, pkg.sampling, pkg.training, pkg.mrd, pkg.models),
    "unlearning_table": source_digest(stages.unlearning_table, pkg.metrics.steps_to_level),
    "comparison_table": source_digest(stages.comparison_table, pkg.metrics.mean_ci),
    "unlearning_figures": source_digest(stages.unlearning_figures, pkg.figures),
    "report": source_digest(pkg.report),
}
