"""Rule prepare_data: write the synthetic TOFU-format splits (or point at TOFU) and check them."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.stages.data import prepare_data

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    prepare_data(sm.output[0], **stage_params(sm))
