"""Rule mrd_figures: the figures of claims C1-C3 and of the estimator's stability."""
from mrd_unlearning.stages import mrd_figures

sm = snakemake  # noqa: F821
mrd_figures(sm.input.scores, sm.input.validation, sm.input.stability, sm.input.sweep, sm.input.data,
            dict(sm.output.items()))
