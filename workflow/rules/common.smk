# Paths shared by the rules, and the per-run helpers.

CONDA_ENV = "../../envs/mrd.yaml"  # used with --sdm conda


def run_dir(algorithm, sampler, seed):
    return f"{R}/unlearning/{algorithm}/{sampler}/seed{seed}"


def run_eval(algorithm, sampler, seed):
    return f"{R}/eval/unlearned/{algorithm}/{sampler}/seed{seed}.json"


def model_settings():
    """What every model-loading job needs; changing it reruns them all."""
    return {"max_length": config["model"]["max_length"], "device": config["device"]}


# Ground truths of difficulty (STUDY 4): the unlearning runs' optimizer and learning rate, and
# plain SGD beside it (difficulty is only defined together with an optimizer).
GROUND_TRUTHS = {
    "update_count": {"optimizer": config["unlearning"]["optimizer"], "lr": config["unlearning"]["lr"]},
    "update_count_sgd": {"optimizer": "sgd", "lr": config["ground_truth"]["sgd_lr"]},
}
