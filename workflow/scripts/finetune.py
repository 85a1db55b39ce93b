"""Rule finetune: the target (role=target) or retain (role=retain) model."""
from mrd_unlearning.stages import finetune_model, stage_params

sm = snakemake  # noqa: F821
finetune_model(sm.wildcards.role, sm.input.data, sm.input.get("base"), sm.output[0], threads=sm.threads, **stage_params(sm))
