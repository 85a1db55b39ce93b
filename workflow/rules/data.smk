rule prepare_data:
    output:
        directory(f"{R}/data"),
    params:
        code=CODE["prepare_data"],
        data_cfg=config["data"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
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
    conda:
        CONDA_ENV
    script:
        "../scripts/tokenizer.py"
