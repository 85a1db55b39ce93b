"""Rule report: report.md, metrics.json and tables/verdicts.csv."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning import report
from mrd_unlearning.jobs import job_log, replicate_inputs

sm = snakemake  # noqa: F821
per_replicate, paths = replicate_inputs(sm)
for files in per_replicate.values():
    for role in ("target", "retain"):
        files[f"{role}_finetune"] = f"{files[f'{role}_finetune']}/finetune.json"
with job_log(sm.log[0]):
    report.write(name=sm.params.name, model_cfg=sm.params.model_cfg, statistics_cfg=sm.params.statistics_cfg,
                 evaluation_cfg=sm.params.evaluation_cfg, level_cap=sm.params.level_cap,
                 paths={**paths, "replicates": per_replicate},
                 out_md=sm.output.md, out_metrics=sm.output.metrics,
                 out_verdicts=sm.output.verdicts)
