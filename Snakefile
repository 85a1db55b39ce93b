# The MRD study, end to end. `snakemake --cores 2` runs config/config.yaml (name: default);
# `--configfile other.yaml` runs another study. See README.md.
from snakemake.utils import min_version

from mrd_unlearning.config import arm_seeds, study_data_configs, validate_config
from mrd_unlearning.jobs import STUDY_OUTPUTS
from mrd_unlearning.plan import job_resources, refuse_unfit, study_plan
from mrd_unlearning.provenance import config_hash, rule_identities

min_version("9.0")


configfile: "config/config.yaml"


# `snakemake --report`: its start page sends the reader to the answers (the Claims category) first.
report: "workflow/report/workflow.rst"


# Validate (and fill defaults) before any job is planned: a bad value stops here, naming the key.
config.update(validate_config(config))
# One study per forget split: a config naming several TOFU forget splits (the paper's 01/05/10)
# runs one study per split, results/<name>_<split>/; otherwise results/<name>/.
STUDIES = study_data_configs(config)
# Replicates of the whole pipeline (training seeds; the data stay the same): every stage's folder
# holds one rep<r>/ per replicate (results/<study>/models/rep0/target, .../mrd/rep0/mrd.csv, ...).
REPLICATES = config["replicates"]
R = "results/{study}"
UL = config["unlearning"]


wildcard_constraints:
    study="|".join(STUDIES),
    replicate="|".join(map(str, REPLICATES)),
    role="target|retain",
    algorithm="|".join(UL["algorithms"]),
    sampler="|".join(UL["samplers"]),
    truth="update_count|update_count_sgd",


# Each rule's code identity (its definition, its script and the package code that reaches), passed
# to its jobs as the param `code`: an edit reruns exactly the jobs whose code it changes, and a
# comment, docstring or layout edit none (profiles/default turns off the script-mtime trigger).
CODE = rule_identities(workflow.basedir)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/mrd.smk"
include: "workflow/rules/unlearn.smk"
include: "workflow/rules/robustness.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        expand(f"{R}/{{output}}", study=STUDIES, output=STUDY_OUTPUTS),
