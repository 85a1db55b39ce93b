"""Rule mrd_validation: how well each difficulty score predicts the required updates."""
from mrd_unlearning.stages import mrd_validation

mrd_validation(snakemake.input[0], snakemake.output[0])  # noqa: F821
