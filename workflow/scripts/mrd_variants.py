"""Rule mrd_variants: every MRD variant on shared perturbations, and its test-retest stability."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.stages.mrd import mrd_variants

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    mrd_variants(sm.input.model, sm.input.data, sm.output.drops, sm.output.stability, threads=sm.threads,
                 **stage_params(sm))
