# One job per (algorithm, sampler, seed). Uniform runs do not depend on MRD in the DAG.


def unlearn_inputs(wc):
    inputs = {"model": in_study(wc, "models/target"), "data": in_study(wc, "data")}
    if wc.sampler != "uniform":
        inputs["mrd"] = in_study(wc, "mrd/mrd.csv")
    if wc.sampler == "mrd_refresh":
        inputs["mrd_meta"] = in_study(wc, "mrd/mrd.json")  # the estimator and its sigma, to recompute MRD
    return inputs


def unlearn_settings(wc):
    """The run's hyper-parameters; tau only where the sampler uses it."""
    keys = ["steps", "epochs", "batch_size", "grad_accumulation", "lr", "optimizer", "log_every"]
    keys += ["tau"] if wc.sampler != "uniform" else []
    keys += ["refresh_every"] if wc.sampler == "mrd_refresh" else []
    return {k: UL[k] for k in keys}


rule unlearn:
    input:
        unpack(unlearn_inputs),
    output:
        directory(run_dir("{algorithm}", "{sampler}", "{seed}")),
    params:
        code=CODE["unlearn"],
        unlearning_cfg=unlearn_settings,
        lora=config["model"]["lora"],
        **model_settings(),
    threads: config["threads"]
    resources:
        mem_mb=MODEL_MEM_MB,
        runtime=60,
        gpu=GPUS,
    conda:
        CONDA_ENV
    script:
        "../scripts/unlearn.py"
