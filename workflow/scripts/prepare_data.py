"""Rule prepare_data: write the synthetic TOFU-format splits and check them."""
from mrd_unlearning.stages import prepare_data, stage_params

prepare_data(snakemake.output[0], **stage_params(snakemake))  # noqa: F821
