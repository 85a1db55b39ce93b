rule unlearning_table:
    input:
        runs=[run_dir(*r) for r in RUNS],
        evals=[run_eval(*r) for r in RUNS],
        retain=f"{R}/eval/retain.json",
    output:
        table=report(f"{R}/tables/unlearning.csv", caption="../report/unlearning.rst", category="Unlearning"),
        curves=f"{R}/tables/curves.csv",
    params:
        code=CODE["unlearning_table"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/unlearning_table.py"


rule comparison_table:
    input:
        f"{R}/tables/unlearning.csv",
    output:
        report(f"{R}/tables/comparison.csv", caption="../report/comparison.rst", category="Unlearning"),
    params:
        code=CODE["comparison_table"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/comparison_table.py"


rule unlearning_figures:
    input:
        unlearning=f"{R}/tables/unlearning.csv",
        curves=f"{R}/tables/curves.csv",
        retain=f"{R}/eval/retain.json",
    output:
        curves=report(f"{R}/figures/unlearning_curves.png", caption="../report/unlearning_curves.rst",
                      category="Unlearning"),
        tradeoff=report(f"{R}/figures/unlearning_tradeoff.png", caption="../report/unlearning_tradeoff.rst",
                        category="Unlearning"),
    params:
        code=CODE["unlearning_figures"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/unlearning_figures.py"


rule report:
    input:
        target_eval=f"{R}/eval/target.json",
        retain_eval=f"{R}/eval/retain.json",
        target_finetune=f"{R}/models/target",
        retain_finetune=f"{R}/models/retain",
        mrd_meta=f"{R}/mrd/mrd.json",
        scores=f"{R}/mrd/scores.csv",
        validation=f"{R}/tables/mrd_validation.csv",
        stability=f"{R}/tables/mrd_stability.csv",
        sweep=f"{R}/tables/mrd_sigma_sweep.csv",
        unlearning=f"{R}/tables/unlearning.csv",
        comparison=f"{R}/tables/comparison.csv",
        difficulty_figure=f"{R}/figures/difficulty.png",
        mrd_figure=f"{R}/figures/mrd_validation.png",
        factors_figure=f"{R}/figures/factors.png",
        stability_figure=f"{R}/figures/mrd_stability.png",
        curves_figure=f"{R}/figures/unlearning_curves.png",
        tradeoff_figure=f"{R}/figures/unlearning_tradeoff.png",
        data=f"{R}/data",
    output:
        md=f"{R}/report.md",
        metrics=f"{R}/metrics.json",
    params:
        code=CODE["report"],
        name=lambda wc: wc.study,
        model_cfg=config["model"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/report.py"
