# One evaluation entry point for every model. The retain model is the reference: forget quality
# compares an evaluated model's forget-set truth ratios with the retain model's.
rule evaluate_finetuned:
    input:
        model=f"{R}/models/{{role}}",
        data=f"{R}/data",
        reference=lambda wc: [] if wc.role == "retain" else in_study(wc, "eval/retain_samples.csv"),
    output:
        summary=f"{R}/eval/{{role}}.json",
        samples=f"{R}/eval/{{role}}_samples.csv",
    params:
        code=CODE["evaluate"],
        eval_cfg=config["evaluation"],
        **model_settings(),
    threads: config["threads"]
    resources:
        mem_mb=MODEL_MEM_MB,
        runtime=30,
        gpu=GPUS,
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate.py"


rule evaluate_unlearned:
    input:
        model=run_dir("{algorithm}", "{sampler}", "{seed}"),
        data=f"{R}/data",
        reference=f"{R}/eval/retain_samples.csv",
    output:
        summary=run_eval("{algorithm}", "{sampler}", "{seed}"),
        samples=f"{R}/eval/unlearned/{{algorithm}}/{{sampler}}/seed{{seed}}_samples.csv",
    params:
        code=CODE["evaluate"],
        eval_cfg=config["evaluation"],
        **model_settings(),
    threads: config["threads"]
    resources:
        mem_mb=MODEL_MEM_MB,
        runtime=30,
        gpu=GPUS,
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate.py"
