"""Rule baselines: loss, gradient norm, max-token NLL and answer length of each forget sample."""
from mrd_unlearning.stages import baseline_scores, stage_params

sm = snakemake  # noqa: F821
baseline_scores(sm.input.model, sm.input.data, sm.output[0], threads=sm.threads, **stage_params(sm))
