"""Rule finetune: the target (role=target) or retain (role=retain) model of one replicate."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.stages.finetune import finetune_model

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    finetune_model(sm.wildcards.role, sm.input.data, sm.input.get("base"), sm.output[0], threads=sm.threads,
                   **stage_params(sm))
