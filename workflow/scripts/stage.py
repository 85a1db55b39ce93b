"""Every rule's script: the stage function the rule names (its `stage` param), called with the
job's inputs, outputs, params and threads by name (mrd_unlearning.jobs.run_stage)."""
from mrd_unlearning.jobs import run_stage

run_stage(snakemake)  # noqa: F821
