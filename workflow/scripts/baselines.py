"""Rule baselines: the cheap scores (loss, gradient norm, max-token NLL, answer length) and the
field's (entanglement, the third-party MRD reading) and C3's sample characteristics of each forget sample."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.stages.mrd import baseline_scores

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    baseline_scores(sm.input.model, sm.input.data, sm.output[0], base=sm.input.get("base"), threads=sm.threads,
                    **stage_params(sm))
