"""Rule ground_truth: required gradient-ascent updates per forget sample, and the likelihood curves."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.stages.mrd import ground_truth

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    ground_truth(sm.input.model, sm.input.data, sm.input.reference, sm.output.counts, sm.output.curves,
                 threads=sm.threads, **stage_params(sm))
