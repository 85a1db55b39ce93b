# Paths shared by the rules, and the per-run helpers.

CONDA_ENV = "../../envs/mrd.yaml"  # used with --sdm conda


def run_dir(algorithm, sampler, seed):
    return f"{R}/unlearning/{algorithm}/{sampler}/seed{seed}"


def run_eval(algorithm, sampler, seed):
    return f"{R}/eval/unlearned/{algorithm}_{sampler}_seed{seed}.json"


def model_settings():
    """What every model-loading job needs; changing it reruns them all."""
    return {"max_length": config["model"]["max_length"], "device": config["device"]}
