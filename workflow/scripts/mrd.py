"""Rule mrd: MRD of every forget sample on one replicate's target model."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.stages.mrd import score_forget_set

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    score_forget_set(sm.input.model, sm.input.data, sm.output.scores, sm.output.meta, threads=sm.threads, **stage_params(sm))
