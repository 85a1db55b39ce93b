"""Rule mrd_validation: how well each difficulty score predicts each ground truth, per replicate
and pooled; the variants' stability, the sigma sweep, and difficulty across replicates."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, replicate_inputs, stage_params
from mrd_unlearning.pooled import mrd_validation

sm = snakemake  # noqa: F821
per_replicate, _ = replicate_inputs(sm)
with job_log(sm.log[0]):
    mrd_validation(sm.input.scores, {r: files["variants"] for r, files in per_replicate.items()},
                   {r: files["stability"] for r, files in per_replicate.items()}, sm.input.data,
                   out=dict(sm.output.items()), **stage_params(sm))
