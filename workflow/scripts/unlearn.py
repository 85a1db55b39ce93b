"""Rule unlearn: one (algorithm, sampler, seed) run from the target model."""
from mrd_unlearning.stages import unlearn_run, stage_params

sm = snakemake  # noqa: F821
unlearn_run(sm.input.model, sm.input.data, sm.output[0], algorithm=sm.wildcards.algorithm,
            sampler=sm.wildcards.sampler, seed=int(sm.wildcards.seed), mrd_csv=sm.input.get("mrd"),
            mrd_json=sm.input.get("mrd_meta"), threads=sm.threads, **stage_params(sm))
