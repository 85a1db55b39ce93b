"""Rule report: report.md and metrics.json."""
from mrd_unlearning import report

sm = snakemake  # noqa: F821
paths = dict(sm.input.items())
for role in ("target", "retain"):
    paths[f"{role}_finetune"] = f"{paths[f'{role}_finetune']}/finetune.json"
report.write(name=sm.params.name, model_cfg=sm.params.model_cfg, paths=paths, out_md=sm.output.md, out_metrics=sm.output.metrics)
