rule prepare_data:
    output:
        directory(f"{R}/data"),
    params:
        code=CODE["prepare_data"],
        data_cfg=lambda wc: STUDIES[wc.study],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_data.py"


rule tokenizer:
    input:
        data=f"{R}/data",
    output:
        directory(f"{R}/models/tokenizer"),
    params:
        code=CODE["tokenizer"],
        vocab_size=config["tokenizer"]["vocab_size"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    conda:
        CONDA_ENV
    script:
        "../scripts/tokenizer.py"
