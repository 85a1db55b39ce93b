"""Rule comparison_table: paired weighted - uniform differences."""
from mrd_unlearning.stages import comparison_table

comparison_table(snakemake.input[0], snakemake.output[0])  # noqa: F821
