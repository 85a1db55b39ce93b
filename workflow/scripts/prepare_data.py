"""Rule prepare_data: write the synthetic TOFU-format splits and check them."""
from mrd_unlearning.stages import prepare_data

prepare_data(snakemake.output[0], **snakemake.params)  # noqa: F821
