"""Rule unlearn: every seed of one (algorithm, sampler) on one replicate's target model, evaluated
after the budget and at equal forgetting."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.stages.unlearn import unlearn_runs

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    unlearn_runs(sm.input.model, sm.input.data, sm.input.retain_summary, sm.input.retain_samples, sm.output[0],
                 replicate=int(sm.wildcards.replicate), algorithm=sm.wildcards.algorithm,
                 sampler=sm.wildcards.sampler, mrd_csv=sm.input.get("mrd"), mrd_json=sm.input.get("mrd_meta"),
                 baselines_csv=sm.input.get("baselines"),                 threads=sm.threads, **stage_params(sm))
