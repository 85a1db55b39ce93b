"""Rule evaluate_finetuned: the one evaluation entry point."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.stages.evaluate import evaluate_model

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    evaluate_model(sm.input.model, sm.input.data, sm.output.summary, sm.output.samples, sm.output.openunlearning,
                   reference_csv=sm.input.reference or None, threads=sm.threads, **stage_params(sm))
