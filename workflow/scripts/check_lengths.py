"""Rule check_lengths: every row of the study against model.max_length, before any training."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log
from mrd_unlearning.stages.tokenizer import check_lengths

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    check_lengths(sm.input.data, sm.output[0], tokenizer_source=sm.input.get("base") or sm.params.name_or_path,
                  max_length=sm.params.max_length)
