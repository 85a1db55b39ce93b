"""Rule unlearning_table: tables/unlearning.csv (one row per run) and tables/curves.csv."""
from mrd_unlearning.stages import unlearning_table

sm = snakemake  # noqa: F821
unlearning_table(list(sm.input.runs), list(sm.input.evals), sm.input.retain, sm.output.table, sm.output.curves)
