"""Rule unlearning_table: one row per run (replicate, algorithm, sampler, seed), every curve, and
each run's completeness per group of the forget set."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, replicate_inputs
from mrd_unlearning.pooled import author_outcomes, unlearning_table

sm = snakemake  # noqa: F821
per_replicate, _ = replicate_inputs(sm)
with job_log(sm.log[0]):
    unlearning_table(list(sm.input.runs), sm.output.table, sm.output.curves)
    retain = {r: files["retain_samples"] for r, files in per_replicate.items()}
    author_outcomes(list(sm.input.runs), retain, sm.input.data, sm.output.authors)
