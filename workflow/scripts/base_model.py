"""Rule base_model: convert the pretrained model once to a safetensors checkpoint."""
from mrd_unlearning.stages import convert_base_model, stage_params

convert_base_model(snakemake.output[0], **stage_params(snakemake))  # noqa: F821
