"""Rule comparison_table: paired weighted - uniform differences, pooled and per replicate, and
their forest plot."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.jobs import job_log, stage_params
from mrd_unlearning.pooled import comparison_table

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    comparison_table(sm.input[0], sm.output.table, sm.output.forest, **stage_params(sm))
