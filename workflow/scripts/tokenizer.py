"""Rule tokenizer: train the BPE tokenizer on the study's corpus."""
from mrd_unlearning.stages import build_tokenizer

build_tokenizer(snakemake.input.data, snakemake.output[0], **snakemake.params)  # noqa: F821
