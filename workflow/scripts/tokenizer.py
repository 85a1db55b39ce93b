"""Rule tokenizer: train the BPE tokenizer on the study's corpus."""
from mrd_unlearning.io import stage_params
from mrd_unlearning.stages import build_tokenizer

build_tokenizer(snakemake.input.data, snakemake.output[0], **stage_params(snakemake))  # noqa: F821
