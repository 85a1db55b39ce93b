"""Rule mrd_validation: how well each difficulty score predicts each ground truth, per replicate
and pooled; the variants' stability, the sigma sweep, and difficulty across replicates."""
from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.pooled import mrd_validation

sm = snakemake  # noqa: F821
named = dict(sm.input.items())
with job_log(sm.log[0]):
    mrd_validation(sm.input.scores, {k.split("_")[-1]: v for k, v in named.items() if k.startswith("variants_")},
                   {k.split("_")[-1]: v for k, v in named.items() if k.startswith("stability_")}, sm.input.data,
                   out=dict(sm.output.items()), **stage_params(sm))
