# Per replicate: the target model on `full`, the retain model on the retain split; same recipe,
# same stopping rule, training seed = the replicate.


rule finetune:
    input:
        unpack(finetune_base),
        data_dir=f"{R}/data",
        after_lengths=f"{R}/data_lengths.json",  # every row fits model.max_length
    output:
        out_dir=directory(f"{R}/models/rep{{replicate}}/{{role}}"),
    log:
        log_file("finetune/rep{replicate}_{role}"),
    benchmark:
        benchmark_file("finetune/rep{replicate}_{role}")
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        mem_mb=planned("finetune", "mem_mb", MODEL_MEM_MB),
        runtime=planned("finetune", "runtime", 120),
        gpu=GPUS * config["finetune"]["processes"],  # data-parallel: one GPU per process
    params:
        stage="stages.finetune:finetune_model",
        code=CODE["finetune"],
        model_cfg=config["model"],
        finetune_cfg=config["finetune"],
        seed=lambda wc: int(wc.replicate),
        device=config["device"],
    script:
        "../scripts/stage.py"
