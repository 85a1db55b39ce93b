"""Rule calibration: the verdict rules on simulated studies of this design."""
from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.pooled import calibration

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    calibration(**dict(sm.input), out_csv=sm.output[0], **stage_params(sm))
