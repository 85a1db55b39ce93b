# MRD of every forget sample on the target model, its ground truth, and their comparison.
rule mrd:
    input:
        model=f"{R}/models/target",
        data=f"{R}/data",
    output:
        scores=f"{R}/mrd/mrd.csv",
        meta=f"{R}/mrd/mrd.json",
    params:
        mrd_cfg=config["mrd"],
        **model_settings(),
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/mrd.py"


rule ground_truth:
    input:
        model=f"{R}/models/target",
        data=f"{R}/data",
        reference=f"{R}/eval/retain_samples.csv",
    output:
        f"{R}/mrd/update_counts.csv",
    params:
        gt_cfg=config["ground_truth"],
        # only what the counts depend on: the unlearning runs' optimizer and learning rate
        unlearning_cfg={k: config["unlearning"][k] for k in ("optimizer", "lr")},
        seed=config["seed"],
        **model_settings(),
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        CONDA_ENV
    script:
        "../scripts/ground_truth.py"


rule scores:
    input:
        mrd=f"{R}/mrd/mrd.csv",
        counts=f"{R}/mrd/update_counts.csv",
        data=f"{R}/data",
    output:
        f"{R}/mrd/scores.csv",
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/scores.py"


rule mrd_validation:
    input:
        f"{R}/mrd/scores.csv",
    output:
        report(f"{R}/tables/mrd_validation.csv", caption="../report/mrd_validation.rst", category="MRD"),
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/mrd_validation.py"
