# MRD of every forget sample on the target model, its ground truths, baselines and validation.


rule mrd:
    """The MRD the weighted samplers use (only the main estimator's keys are params, so editing
    a validation variant does not rerun the unlearning runs)."""
    input:
        model=f"{R}/models/target",
        data=f"{R}/data",
    output:
        scores=f"{R}/mrd/mrd.csv",
        meta=f"{R}/mrd/mrd.json",
    params:
        code=CODE["mrd"],
        mrd_cfg={k: v for k, v in config["mrd"].items() if k != "validation"},
        **model_settings(),
    threads: config["threads"]
    resources:
        mem_mb=MODEL_MEM_MB,
        runtime=60,
        gpu=GPUS,
    conda:
        CONDA_ENV
    script:
        "../scripts/mrd.py"


rule mrd_variants:
    input:
        model=f"{R}/models/target",
        data=f"{R}/data",
    output:
        drops=f"{R}/mrd/variants.csv",
        stability=report(f"{R}/tables/mrd_stability.csv", caption="../report/mrd_stability.rst", category="MRD"),
    params:
        code=CODE["mrd_variants"],
        mrd_cfg=config["mrd"],
        **model_settings(),
    threads: config["threads"]
    resources:
        mem_mb=MODEL_MEM_MB,
        runtime=120,
        gpu=GPUS,
    conda:
        CONDA_ENV
    script:
        "../scripts/mrd_variants.py"


rule baselines:
    input:
        model=f"{R}/models/target",
        data=f"{R}/data",
    output:
        f"{R}/mrd/baselines.csv",
    params:
        code=CODE["baselines"],
        **model_settings(),
    threads: config["threads"]
    resources:
        mem_mb=MODEL_MEM_MB,
        runtime=30,
        gpu=GPUS,
    conda:
        CONDA_ENV
    script:
        "../scripts/baselines.py"


rule ground_truth:
    """Required updates per forget sample with one optimizer (see GROUND_TRUTHS)."""
    input:
        model=f"{R}/models/target",
        data=f"{R}/data",
        reference=f"{R}/eval/retain_samples.csv",
    output:
        f"{R}/mrd/{{truth}}.csv",
    params:
        code=CODE["ground_truth"],
        optimizer=lambda wc: GROUND_TRUTHS[wc.truth]["optimizer"],
        lr=lambda wc: GROUND_TRUTHS[wc.truth]["lr"],
        max_steps=config["ground_truth"]["max_steps"],
        seed=config["seed"],
        lora=config["model"]["lora"],
        **model_settings(),
    threads: config["threads"]
    resources:
        mem_mb=MODEL_MEM_MB,
        runtime=120,
        gpu=GPUS,
    conda:
        CONDA_ENV
    script:
        "../scripts/ground_truth.py"


rule scores:
    input:
        mrd=f"{R}/mrd/mrd.csv",
        counts=expand(f"{R}/mrd/{{truth}}.csv", truth=GROUND_TRUTHS, allow_missing=True),
        baselines=f"{R}/mrd/baselines.csv",
        variants=f"{R}/mrd/variants.csv",
        reference=f"{R}/eval/retain_samples.csv",
        data=f"{R}/data",
    output:
        f"{R}/mrd/scores.csv",
    params:
        code=CODE["scores"],
        eps=config["mrd"]["eps"],
        truths=list(GROUND_TRUTHS),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/scores.py"


rule mrd_validation:
    input:
        scores=f"{R}/mrd/scores.csv",
        variants=f"{R}/mrd/variants.csv",
        stability=f"{R}/tables/mrd_stability.csv",
        data=f"{R}/data",
    output:
        validation=report(f"{R}/tables/mrd_validation.csv", caption="../report/mrd_validation.rst", category="MRD"),
        sweep=report(f"{R}/tables/mrd_sigma_sweep.csv", caption="../report/mrd_sigma_sweep.rst", category="MRD"),
    params:
        code=CODE["mrd_validation"],
        eps=config["mrd"]["eps"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/mrd_validation.py"


rule mrd_figures:
    input:
        scores=f"{R}/mrd/scores.csv",
        validation=f"{R}/tables/mrd_validation.csv",
        stability=f"{R}/tables/mrd_stability.csv",
        sweep=f"{R}/tables/mrd_sigma_sweep.csv",
        data=f"{R}/data",
    output:
        difficulty=report(f"{R}/figures/difficulty.png", caption="../report/difficulty_figure.rst", category="MRD"),
        validation=report(f"{R}/figures/mrd_validation.png", caption="../report/mrd_figure.rst", category="MRD"),
        factors=report(f"{R}/figures/factors.png", caption="../report/factors_figure.rst", category="MRD"),
        stability=report(f"{R}/figures/mrd_stability.png", caption="../report/stability_figure.rst", category="MRD"),
    params:
        code=CODE["mrd_figures"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/mrd_figures.py"
