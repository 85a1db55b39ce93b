"""Rule tokenizer: train the BPE tokenizer on the study's corpus."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.stages.tokenizer import build_tokenizer

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    build_tokenizer(sm.input.data, sm.output[0], **stage_params(sm))
