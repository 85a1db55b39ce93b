"""Rule unlearning_figures: curves, trade-off and steps-to-forget figures."""
from mrd_unlearning.jobs import job_log
from mrd_unlearning.pooled import unlearning_figures

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    unlearning_figures(sm.input.unlearning, sm.input.curves,
                       {str(r): sm.input[f"retain_{r}"] for r in sm.params.replicates}, dict(sm.output.items()))
