# The fine-tuned models, through the one evaluation entry point (unlearned models are evaluated
# inside their unlearning job). The retain model is the reference: forget quality compares a
# model's forget-set truth ratios with the retain model's.


rule evaluate_finetuned:
    input:
        model_dir=f"{R}/models/rep{{replicate}}/{{role}}",
        data_dir=f"{R}/data",
        reference_csv=lambda wc: (
            []
            if wc.role == "retain"
            else in_replicate(wc, "eval/rep{r}/retain_samples.csv")
        ),
    output:
        summary_json=f"{R}/eval/rep{{replicate}}/{{role}}.json",
        samples_csv=f"{R}/eval/rep{{replicate}}/{{role}}_samples.csv",
        openunlearning_json=f"{R}/eval/rep{{replicate}}/{{role}}_TOFU_EVAL.json",
    log:
        log_file("evaluate_finetuned/rep{replicate}_{role}"),
    benchmark:
        benchmark_file("evaluate_finetuned/rep{replicate}_{role}")
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        mem_mb=planned("evaluate_finetuned", "mem_mb", MODEL_MEM_MB),
        runtime=planned("evaluate_finetuned", "runtime", 30),
        gpu=GPUS,
    params:
        **model_settings(),
        stage="stages.evaluate:evaluate_model",
        code=CODE["evaluate_finetuned"],
        eval_cfg=config["evaluation"],
    script:
        "../scripts/stage.py"
