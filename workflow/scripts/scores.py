"""Rule scores: mrd/scores.csv (MRD, ground truth, baselines, known factors)."""
from mrd_unlearning.stages import collect_scores

sm = snakemake  # noqa: F821
collect_scores(sm.input.mrd, sm.input.counts, sm.input.data, sm.output[0])
