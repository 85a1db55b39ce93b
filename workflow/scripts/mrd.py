"""Rule mrd: MRD of every forget sample on the target model."""
from mrd_unlearning.stages import score_mrd, stage_params

sm = snakemake  # noqa: F821
score_mrd(sm.input.model, sm.input.data, sm.output.scores, sm.output.meta, threads=sm.threads, **stage_params(sm))
