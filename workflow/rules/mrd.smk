# Per replicate: MRD of every forget sample on the target model, its variants, the baselines and
# the ground truths. Then, pooled over replicates: scores, validation and figures.


rule mrd:
    """The MRD the weighted samplers use (only the main estimator's keys are params, so editing
    a validation variant does not rerun the unlearning runs)."""
    input:
        model_dir=f"{R}/models/rep{{replicate}}/target",
        data_dir=f"{R}/data",
    output:
        out_csv=f"{R}/mrd/rep{{replicate}}/mrd.csv",
        out_json=f"{R}/mrd/rep{{replicate}}/mrd.json",
    log:
        log_file("mrd/rep{replicate}"),
    benchmark:
        benchmark_file("mrd/rep{replicate}")
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        mem_mb=planned("mrd", "mem_mb", MODEL_MEM_MB),
        runtime=planned("mrd", "runtime", 60),
        gpu=GPUS,
    params:
        **model_settings(),
        stage="stages.mrd:score_forget_set",
        code=CODE["mrd"],
        mrd_cfg={k: v for k, v in config["mrd"].items() if k != "validation"},
        tau=UL["tau"],  # of the weights written beside the scores
    script:
        "../scripts/stage.py"


rule mrd_variants:
    """Every variant, the test-retest seed and the sigma sweep (on VARIANT_REPLICATES)."""
    input:
        model_dir=f"{R}/models/rep{{replicate}}/target",
        data_dir=f"{R}/data",
    output:
        drops_csv=f"{R}/mrd/rep{{replicate}}/variants.csv",
        stability_csv=f"{R}/mrd/rep{{replicate}}/stability.csv",
    log:
        log_file("mrd_variants/rep{replicate}"),
    benchmark:
        benchmark_file("mrd_variants/rep{replicate}")
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        mem_mb=planned("mrd_variants", "mem_mb", MODEL_MEM_MB),
        runtime=planned("mrd_variants", "runtime", 120),
        gpu=GPUS,
    params:
        **model_settings(),
        stage="stages.mrd:mrd_variants",
        code=CODE["mrd_variants"],
        mrd_cfg=MRD_VARIANT_CFG,
    script:
        "../scripts/stage.py"


rule baselines:
    input:
        unpack(finetune_base),  # base_loglik: the model before fine-tuning
        model_dir=f"{R}/models/rep{{replicate}}/target",
        data_dir=f"{R}/data",
    output:
        out_csv=f"{R}/mrd/rep{{replicate}}/baselines.csv",
    log:
        log_file("baselines/rep{replicate}"),
    benchmark:
        benchmark_file("baselines/rep{replicate}")
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        mem_mb=planned("baselines", "mem_mb", MODEL_MEM_MB),
        runtime=planned("baselines", "runtime", 30),
        gpu=GPUS,
    params:
        **model_settings(),
        stage="stages.mrd:baseline_scores",
        code=CODE["baselines"],
        mrd_cfg={k: config["mrd"][k] for k in ("batch_size", "seed", "eps")},
        model_cfg=config["model"],
        seed=lambda wc: int(wc.replicate),
    script:
        "../scripts/stage.py"


rule ground_truth:
    """Required updates per forget sample with one optimizer (see GROUND_TRUTHS)."""
    input:
        model_dir=f"{R}/models/rep{{replicate}}/target",
        data_dir=f"{R}/data",
        retain_samples_csv=f"{R}/eval/rep{{replicate}}/retain_samples.csv",
    output:
        out_csv=f"{R}/mrd/rep{{replicate}}/{{truth}}.csv",
        curves_csv=f"{R}/mrd/rep{{replicate}}/{{truth}}_curves.csv",
    log:
        log_file("ground_truth/rep{replicate}_{truth}"),
    benchmark:
        benchmark_file("ground_truth/rep{replicate}_{truth}")
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        mem_mb=planned("ground_truth", "mem_mb", MODEL_MEM_MB),
        runtime=planned("ground_truth", "runtime", 120),
        gpu=GPUS,
    params:
        **model_settings(),
        stage="stages.mrd:ground_truth",
        code=CODE["ground_truth"],
        optimizer=lambda wc: GROUND_TRUTHS[wc.truth]["optimizer"],
        lr=lambda wc: GROUND_TRUTHS[wc.truth]["lr"],
        max_steps=config["ground_truth"]["max_steps"],
        max_samples=config["ground_truth"]["max_samples"],
        reset_copy=config["ground_truth"]["reset_copy"],
        sample_seed=config["seed"],
        seed=lambda wc: int(wc.replicate),
        lora=config["model"]["lora"],
    script:
        "../scripts/stage.py"


rule scores:
    """mrd/scores.csv: one row per (replicate, forget sample)."""
    input:
        unpack(scores_inputs),
        data_dir=f"{R}/data",
    output:
        out_csv=f"{R}/mrd/scores.csv",
    log:
        log_file("scores"),
    benchmark:
        benchmark_file("scores")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    params:
        stage="pooled:collect_scores",
        code=CODE["scores"],
        eps=config["mrd"]["eps"],
        truths=list(GROUND_TRUTHS),
    script:
        "../scripts/stage.py"


rule mrd_validation:
    input:
        unpack(variant_study_inputs),
        scores_csv=f"{R}/mrd/scores.csv",
        data_dir=f"{R}/data",
    output:
        validation=report(
            f"{R}/tables/mrd_validation.csv",
            caption="../report/mrd_validation.rst",
            category="MRD",
        ),
        sweep=report(
            f"{R}/tables/mrd_sigma_sweep.csv",
            caption="../report/mrd_sigma_sweep.rst",
            category="MRD",
        ),
        stability=report(
            f"{R}/tables/mrd_stability.csv",
            caption="../report/mrd_stability.rst",
            category="MRD",
        ),
        replicate_stability=report(
            f"{R}/tables/replicate_stability.csv",
            caption="../report/replicate_stability.rst",
            category="MRD",
        ),
    log:
        log_file("mrd_validation"),
    benchmark:
        benchmark_file("mrd_validation")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    params:
        stage="pooled:mrd_validation",
        code=CODE["mrd_validation"],
        eps=config["mrd"]["eps"],
        statistics_cfg=VALIDATION_STATISTICS,
    script:
        "../scripts/stage.py"


rule mrd_figures:
    input:
        scores_csv=f"{R}/mrd/scores.csv",
        validation_csv=f"{R}/tables/mrd_validation.csv",
        stability_csv=f"{R}/tables/mrd_stability.csv",
        sweep_csv=f"{R}/tables/mrd_sigma_sweep.csv",
        replicate_stability_csv=f"{R}/tables/replicate_stability.csv",
    output:
        difficulty=report(
            f"{R}/figures/difficulty.png",
            caption="../report/difficulty_figure.rst",
            category="MRD",
        ),
        validation=report(
            f"{R}/figures/mrd_validation.png",
            caption="../report/mrd_figure.rst",
            category="MRD",
        ),
        factors=report(
            f"{R}/figures/factors.png",
            caption="../report/factors_figure.rst",
            category="MRD",
        ),
        stability=report(
            f"{R}/figures/mrd_stability.png",
            caption="../report/stability_figure.rst",
            category="MRD",
        ),
    log:
        log_file("mrd_figures"),
    benchmark:
        benchmark_file("mrd_figures")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    params:
        stage="pooled:mrd_figures",
        code=CODE["mrd_figures"],
    script:
        "../scripts/stage.py"
