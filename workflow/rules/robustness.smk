# Attacks on forgetting: every unlearning run is attacked after its budget inside its own job
# (rule unlearn); here the controls, once per replicate, and the pooled recovery tables.


rule attack_controls:
    input:
        target_dir=f"{R}/models/rep{{replicate}}/target",
        retain_dir=f"{R}/models/rep{{replicate}}/retain",
        data_dir=f"{R}/data",
    output:
        out_csv=f"{R}/robustness/rep{{replicate}}/controls.csv",
    log:
        log_file("attack_controls/rep{replicate}"),
    benchmark:
        benchmark_file("attack_controls/rep{replicate}")
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        mem_mb=planned("attack_controls", "mem_mb", MODEL_MEM_MB),
        runtime=planned("attack_controls", "runtime", 30),
        gpu=GPUS,
    params:
        **model_settings(),
        stage="stages.robustness:attack_controls",
        code=CODE["attack_controls"],
        robustness_cfg=ROBUSTNESS,
        eval_cfg=config["evaluation"],
        lr=UL["lr"],
        lora=config["model"]["lora"],
    script:
        "../scripts/stage.py"


rule robustness_tables:
    input:
        unpack(robustness_inputs),
        run_dirs=run_groups,
        scores_csv=f"{R}/mrd/scores.csv",
    output:
        samples_csv=f"{R}/tables/recovery_samples.csv",
        runs_csv=report(
            f"{R}/tables/recovery_runs.csv",
            caption="../report/recovery_runs.rst",
            category="Robustness",
        ),
        tiers_csv=f"{R}/tables/recovery_tiers.csv",
        difficulty_csv=f"{R}/tables/recovery_difficulty.csv",
        comparison_csv=f"{R}/tables/robustness.csv",
        calibration_csv=f"{R}/tables/robustness_calibration.csv",
        figure_png=report(
            f"{R}/figures/recovery_tiers.png",
            caption="../report/recovery_tiers.rst",
            category="Robustness",
        ),
    log:
        log_file("robustness_tables"),
    benchmark:
        benchmark_file("robustness_tables")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
        gpu=0,
    params:
        stage="pooled:robustness_tables",
        code=CODE["robustness_tables"],
        min_drop=ROBUSTNESS.get("min_drop", {}),
        statistics_cfg=config["statistics"],
    script:
        "../scripts/stage.py"
