"""Rule base_model: convert the pretrained model once to a safetensors checkpoint."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.stages.finetune import convert_base_model

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    convert_base_model(sm.output[0], **stage_params(sm))
