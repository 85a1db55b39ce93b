"""Rule run_record: results/<study>/run.json."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from pathlib import Path

from mrd_unlearning.jobs import job_log
from mrd_unlearning.provenance import write_run_record

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    write_run_record(Path(sm.log[0]).parent, sm.output[0], study=sm.params.name, code=sm.params.identities,
                     config_files=sm.params.config_files, config_digest=sm.params.config_hash)
