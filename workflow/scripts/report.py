"""Rule report: report.md and metrics.json."""
from mrd_unlearning import report
from mrd_unlearning.jobs import job_log

sm = snakemake  # noqa: F821
named = dict(sm.input.items())
per_replicate = {}
for r in sm.params.replicates:
    files = {k[:-len(f"_{r}")]: v for k, v in named.items() if k.endswith(f"_{r}")}
    for role in ("target", "retain"):
        files[f"{role}_finetune"] = f"{files[f'{role}_finetune']}/finetune.json"
    per_replicate[str(r)] = files
paths = {k: v for k, v in named.items() if not k.rsplit("_", 1)[-1].isdigit()}
with job_log(sm.log[0]):
    report.write(name=sm.params.name, model_cfg=sm.params.model_cfg, statistics_cfg=sm.params.statistics_cfg,
                 evaluation_cfg=sm.params.evaluation_cfg, level_cap=sm.params.level_cap,
                 paths={**paths, "replicates": per_replicate},
                 out_md=sm.output.md, out_metrics=sm.output.metrics)
