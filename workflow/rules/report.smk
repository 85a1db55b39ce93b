# Pooled over replicates: the unlearning tables, their figures, the report and metrics.json.


rule unlearning_table:
    input:
        unpack(retain_samples),
        run_dirs=run_groups,
        data_dir=f"{R}/data",
    output:
        table_csv=report(
            f"{R}/tables/unlearning.csv",
            caption="../report/unlearning.rst",
            category="Unlearning",
        ),
        curves_csv=f"{R}/tables/curves.csv",
        authors_csv=f"{R}/tables/author_outcomes.csv",
    log:
        log_file("unlearning_table"),
    benchmark:
        benchmark_file("unlearning_table")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    params:
        stage="pooled:unlearning_tables",
        code=CODE["unlearning_table"],
    script:
        "../scripts/stage.py"


rule comparison_table:
    input:
        unlearning_csv=f"{R}/tables/unlearning.csv",
    output:
        out_csv=report(
            f"{R}/tables/comparison.csv",
            caption="../report/comparison.rst",
            category="Unlearning",
        ),
        forest_png=report(
            f"{R}/figures/c4_forest.png",
            caption="../report/c4_forest.rst",
            category="Unlearning",
        ),
    log:
        log_file("comparison_table"),
    benchmark:
        benchmark_file("comparison_table")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    params:
        stage="pooled:comparison_table",
        code=CODE["comparison_table"],
        statistics_cfg=COMPARISON_STATISTICS,
    script:
        "../scripts/stage.py"


rule calibration:
    input:
        scores_csv=f"{R}/mrd/scores.csv",
        unlearning_csv=f"{R}/tables/unlearning.csv",
        comparison_csv=f"{R}/tables/comparison.csv",
        validation_csv=f"{R}/tables/mrd_validation.csv",
        authors_csv=f"{R}/tables/author_outcomes.csv",
    output:
        out_csv=report(
            f"{R}/tables/calibration.csv",
            caption="../report/calibration.rst",
            category="Claims",
        ),
        unit_csv=f"{R}/tables/c4_unit.csv",
    log:
        log_file("calibration"),
    benchmark:
        benchmark_file("calibration")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
        gpu=0,
    params:
        stage="pooled:calibration",
        code=CODE["calibration"],
        statistics_cfg=config["statistics"],
    script:
        "../scripts/stage.py"


rule unlearning_figures:
    input:
        unpack(retain_summaries),
        unlearning_csv=f"{R}/tables/unlearning.csv",
        curves_csv=f"{R}/tables/curves.csv",
    output:
        curves=report(
            f"{R}/figures/unlearning_curves.png",
            caption="../report/unlearning_curves.rst",
            category="Unlearning",
        ),
        tradeoff=report(
            f"{R}/figures/unlearning_tradeoff.png",
            caption="../report/unlearning_tradeoff.rst",
            category="Unlearning",
        ),
        efficiency=report(
            f"{R}/figures/unlearning_efficiency.png",
            caption="../report/unlearning_efficiency.rst",
            category="Unlearning",
        ),
    log:
        log_file("unlearning_figures"),
    benchmark:
        benchmark_file("unlearning_figures")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    params:
        stage="pooled:unlearning_figures",
        code=CODE["unlearning_figures"],
    script:
        "../scripts/stage.py"


rule verdicts:
    """tables/verdicts.csv and metrics.json: the answers, decided apart from the report's wording."""
    input:
        unpack(verdict_inputs),
        unpack(robustness_tables),
        scores=f"{R}/mrd/scores.csv",
        validation=f"{R}/tables/mrd_validation.csv",
        replicate_stability=f"{R}/tables/replicate_stability.csv",
        unlearning=f"{R}/tables/unlearning.csv",
        comparison=f"{R}/tables/comparison.csv",
        calibration=f"{R}/tables/calibration.csv",
        c4_unit=f"{R}/tables/c4_unit.csv",
        data=f"{R}/data",
    output:
        out_metrics=f"{R}/metrics.json",
        out_verdicts=report(
            f"{R}/tables/verdicts.csv",
            caption="../report/verdicts.rst",
            category="Verdicts",
        ),
    log:
        log_file("verdicts"),
    benchmark:
        benchmark_file("verdicts")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    params:
        stage="report:decide",
        code=CODE["verdicts"],
        statistics_cfg=config["statistics"],
        robustness_cfg=ROBUSTNESS,
    script:
        "../scripts/stage.py"


rule report:
    input:
        unpack(report_inputs),
        scores=f"{R}/mrd/scores.csv",
        validation=f"{R}/tables/mrd_validation.csv",
        stability=f"{R}/tables/mrd_stability.csv",
        sweep=f"{R}/tables/mrd_sigma_sweep.csv",
        replicate_stability=f"{R}/tables/replicate_stability.csv",
        unlearning=f"{R}/tables/unlearning.csv",
        comparison=f"{R}/tables/comparison.csv",
        calibration=f"{R}/tables/calibration.csv",
        c4_unit=f"{R}/tables/c4_unit.csv",
        difficulty_figure=f"{R}/figures/difficulty.png",
        mrd_figure=f"{R}/figures/mrd_validation.png",
        factors_figure=f"{R}/figures/factors.png",
        stability_figure=f"{R}/figures/mrd_stability.png",
        curves_figure=f"{R}/figures/unlearning_curves.png",
        tradeoff_figure=f"{R}/figures/unlearning_tradeoff.png",
        efficiency_figure=f"{R}/figures/unlearning_efficiency.png",
        forest_figure=f"{R}/figures/c4_forest.png",
        data=f"{R}/data",
        verdicts=f"{R}/tables/verdicts.csv",
    output:
        out_md=f"{R}/report.md",
    log:
        log_file("report"),
    benchmark:
        benchmark_file("report")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    params:
        stage="report:write",
        code=CODE["report"],
        name=lambda wc: wc.study,
        model_cfg=config["model"],
        statistics_cfg=config["statistics"],
        evaluation_cfg=config["evaluation"],
        level_cap=UL["level_cap"],
        robustness_cfg=ROBUSTNESS,
    script:
        "../scripts/stage.py"


rule samples_page:
    input:
        unpack(samples_page_inputs),
        scores_csv=f"{R}/mrd/scores.csv",
        data_dir=f"{R}/data",
    output:
        out_html=report(
            f"{R}/samples.html",
            caption="../report/samples.rst",
            category="Samples",
        ),
    log:
        log_file("samples_page"),
    benchmark:
        benchmark_file("samples_page")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    params:
        stage="browser:samples_page",
        code=CODE["samples_page"],
        name=lambda wc: wc.study,
        arms=[f"{a}/{s}" for a, s in RUN_GROUPS],
        truths=list(GROUND_TRUTHS),
        replicate=REPLICATES[0],
        seed=UL["seeds"][0],
    script:
        "../scripts/stage.py"


rule run_record:
    """run.json: what this study's results ran (commit, config content, each rule's code
    identity, the jobs' machines and libraries); after every other output, so the identities
    recorded are those every job ran."""
    input:
        expand(
            f"{R}/{{output}}",
            output=[o for o in STUDY_OUTPUTS if o != "run.json"],
            allow_missing=True,
        ),
    output:
        out_json=f"{R}/run.json",
    log:
        log_file("run_record"),
    benchmark:
        benchmark_file("run_record")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
        gpu=0,
    params:
        stage="provenance:write_run_record",
        code=CODE["run_record"],
        code_identities=CODE,
        config_files=[os.path.relpath(path) for path in workflow.configfiles],
        config_digest=config_hash(config),
        study=lambda wc: wc.study,
        logs_dir=lambda wc: in_study(wc, "logs"),
    script:
        "../scripts/stage.py"
