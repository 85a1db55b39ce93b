"""Rule mrd_figures: the figures of claims C1-C3 and of the estimator's stability."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log
from mrd_unlearning.pooled import mrd_figures

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    mrd_figures(sm.input.scores, sm.input.validation, sm.input.stability, sm.input.sweep, sm.input.replicate_stability,
                dict(sm.output.items()))
