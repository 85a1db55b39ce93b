"""Rule prepare_data: write the synthetic TOFU-format splits and check them."""
from mrd_unlearning.io import stage_params
from mrd_unlearning.stages import prepare_data

prepare_data(snakemake.output[0], **stage_params(snakemake))  # noqa: F821
