"""Rule figures: the study's figures."""
from mrd_unlearning.stages import make_figures

sm = snakemake  # noqa: F821
make_figures(sm.input.scores, sm.input.unlearning, list(sm.input.runs), dict(sm.output.items()))
