"""Rule tokenizer: train the BPE tokenizer on the study's corpus."""
from mrd_unlearning.stages import build_tokenizer, stage_params

build_tokenizer(snakemake.input.data, snakemake.output[0], **stage_params(snakemake))  # noqa: F821
