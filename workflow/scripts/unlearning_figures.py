"""Rule unlearning_figures: unlearning curves, the forget quality / model utility trade-off, steps to forget."""
from mrd_unlearning.stages import unlearning_figures

sm = snakemake  # noqa: F821
unlearning_figures(sm.input.unlearning, sm.input.curves, sm.input.retain, dict(sm.output.items()))
