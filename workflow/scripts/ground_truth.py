"""Rule ground_truth: required gradient-ascent updates per forget sample."""
from mrd_unlearning.stages import ground_truth, stage_params

sm = snakemake  # noqa: F821
ground_truth(sm.input.model, sm.input.data, sm.input.reference, sm.output[0], threads=sm.threads, **stage_params(sm))
