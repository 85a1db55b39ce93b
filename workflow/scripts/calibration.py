"""Rule calibration: the verdict rules on simulated studies of this design, and C4's unit."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.pooled import calibration

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    calibration(**dict(sm.input), **dict(sm.output), **stage_params(sm))
