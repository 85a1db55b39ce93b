"""Rule scores: mrd/scores.csv (MRD, ground truths, variants, baselines, oracle, known factors)."""
from mrd_unlearning.stages import collect_scores

sm = snakemake  # noqa: F821
collect_scores(sm.input.mrd, dict(zip(sm.params.truths, sm.input.counts)), sm.input.baselines, sm.input.variants,
               sm.input.reference, sm.input.data, sm.output[0], eps=sm.params.eps)
