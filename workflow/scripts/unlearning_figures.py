"""Rule unlearning_figures: curves, trade-off and steps-to-forget figures."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, replicate_inputs
from mrd_unlearning.pooled import unlearning_figures

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    unlearning_figures(sm.input.unlearning, sm.input.curves,
                       {r: files["retain"] for r, files in replicate_inputs(sm)[0].items()}, dict(sm.output.items()))
