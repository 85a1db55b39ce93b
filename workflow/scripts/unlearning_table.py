"""Rule unlearning_table: one row per run (replicate, algorithm, sampler, seed), and every curve."""
from mrd_unlearning.jobs import job_log
from mrd_unlearning.pooled import unlearning_table

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    unlearning_table(list(sm.input.runs), sm.output.table, sm.output.curves)
