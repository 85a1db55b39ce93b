"""Rules evaluate_finetuned / evaluate_unlearned: the one evaluation entry point."""
from mrd_unlearning.stages import evaluate_model, stage_params

sm = snakemake  # noqa: F821
evaluate_model(sm.input.model, sm.input.data, sm.output.summary, sm.output.samples,
               reference_csv=sm.input.reference or None, threads=sm.threads, **stage_params(sm))
