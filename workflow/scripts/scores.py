"""Rule scores: mrd/scores.csv (per replicate and sample: MRD, ground truths, variants, and every
other difficulty score: baselines, the field's, learning events, memorization, oracle, known
factors)."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from pathlib import Path

from mrd_unlearning.jobs import job_log, replicate_inputs
from mrd_unlearning.pooled import collect_scores
from mrd_unlearning.difficulty import LEARNING_EVENTS

sm = snakemake  # noqa: F821
per_replicate = {
    r: {"mrd_csv": files["mrd"], "baselines_csv": files["baselines"], "retain_samples_csv": files["retain"],
        "variants_csv": files.get("variants"), "counts_csvs": {t: files[t] for t in sm.params.truths},
        "learning_events_csv": str(Path(files["target"]) / LEARNING_EVENTS)}
    for r, files in replicate_inputs(sm)[0].items()
}
with job_log(sm.log[0]):
    collect_scores(per_replicate, sm.input.data, sm.output[0], eps=sm.params.eps)
