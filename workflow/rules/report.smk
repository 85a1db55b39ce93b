rule unlearning_table:
    input:
        runs=[run_dir(*r) for r in RUNS],
        evals=[run_eval(*r) for r in RUNS],
        retain=f"{R}/eval/retain.json",
    output:
        report(f"{R}/tables/unlearning.csv", caption="../report/unlearning.rst", category="Unlearning"),
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/unlearning_table.py"


rule comparison_table:
    input:
        f"{R}/tables/unlearning.csv",
    output:
        report(f"{R}/tables/comparison.csv", caption="../report/comparison.rst", category="Unlearning"),
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/comparison_table.py"


rule figures:
    input:
        scores=f"{R}/mrd/scores.csv",
        unlearning=f"{R}/tables/unlearning.csv",
        runs=[run_dir(*r) for r in RUNS],
    output:
        mrd=report(f"{R}/figures/mrd.png", caption="../report/mrd_figure.rst", category="MRD"),
        unlearning=report(f"{R}/figures/unlearning.png", caption="../report/unlearning_figure.rst",
                          category="Unlearning"),
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/figures.py"


rule report:
    input:
        target_eval=f"{R}/eval/target.json",
        retain_eval=f"{R}/eval/retain.json",
        target_finetune=f"{R}/models/target",
        retain_finetune=f"{R}/models/retain",
        mrd_meta=f"{R}/mrd/mrd.json",
        scores=f"{R}/mrd/scores.csv",
        validation=f"{R}/tables/mrd_validation.csv",
        unlearning=f"{R}/tables/unlearning.csv",
        comparison=f"{R}/tables/comparison.csv",
        mrd_figure=f"{R}/figures/mrd.png",
        unlearning_figure=f"{R}/figures/unlearning.png",
    output:
        md=f"{R}/report.md",
        metrics=f"{R}/metrics.json",
    params:
        name=config["name"],
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/report.py"
