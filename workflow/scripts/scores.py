"""Rule scores: mrd/scores.csv (per replicate and sample: MRD, ground truths, variants, baselines,
oracle, known factors)."""
from mrd_unlearning.jobs import job_log
from mrd_unlearning.pooled import collect_scores

sm = snakemake  # noqa: F821
named = dict(sm.input.items())
per_replicate = {
    str(r): {"mrd_csv": named[f"mrd_{r}"], "baselines_csv": named[f"baselines_{r}"],
             "retain_samples_csv": named[f"retain_{r}"], "variants_csv": named.get(f"variants_{r}"),
             "counts_csvs": {t: named[f"{t}_{r}"] for t in sm.params.truths}}
    for r in sm.params.replicates
}
with job_log(sm.log[0]):
    collect_scores(per_replicate, sm.input.data, sm.output[0], eps=sm.params.eps)
