# One job per (replicate, algorithm, sampler): every seed, each evaluated in the same process
# after the budget and at equal forgetting (no unlearned checkpoint is written and read back).


rule unlearn:
    input:
        unpack(unlearn_inputs),
    output:
        out_dir=directory(f"{R}/unlearning/rep{{replicate}}/{{algorithm}}/{{sampler}}"),
    log:
        log_file("unlearn/rep{replicate}_{algorithm}_{sampler}"),
    benchmark:
        benchmark_file("unlearn/rep{replicate}_{algorithm}_{sampler}")
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        mem_mb=planned("unlearn", "mem_mb", MODEL_MEM_MB),
        runtime=planned("unlearn", "runtime", 60),
        gpu=GPUS,
    params:
        **model_settings(),
        stage="stages.unlearn:unlearn_runs",
        code=CODE["unlearn"],
        unlearning_cfg=unlearn_settings,
        seeds=lambda wc: arm_seeds(config, wc.algorithm, wc.sampler),
        eval_cfg=config["evaluation"],
        lora=config["model"]["lora"],
        robustness_cfg=ROBUSTNESS,
        attack_seeds=UL["seeds"],
    script:
        "../scripts/stage.py"
