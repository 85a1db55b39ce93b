# Target model on `full`, retain model on the retain split: same recipe, same stopping rule.
rule finetune:
    input:
        data=f"{R}/data",
        tokenizer=f"{R}/models/tokenizer",
    output:
        directory(f"{R}/models/{{role}}"),
    params:
        code=CODE["finetune"],
        model_cfg=config["model"],
        finetune_cfg=config["finetune"],
        seed=config["seed"],
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        CONDA_ENV
    script:
        "../scripts/finetune.py"
