"""Rule mrd_validation: how well each difficulty score predicts each ground truth; the sigma sweep."""
from mrd_unlearning.stages import mrd_validation

sm = snakemake  # noqa: F821
mrd_validation(sm.input.scores, sm.input.variants, sm.input.stability, sm.input.data, sm.output.validation,
               sm.output.sweep, eps=sm.params.eps)
