# The MRD study, end to end. `snakemake --cores 2` runs config/config.yaml (name: default);
# `--configfile other.yaml` runs another study. See README.md.
from snakemake.utils import min_version

from mrd_unlearning.config import validate_config

min_version("9.0")


configfile: "config/config.yaml"


# Validate (and fill defaults) before any job is planned: a bad value stops here, naming the key.
config.update(validate_config(config))
R = f"results/{config['name']}"
UL = config["unlearning"]
RUNS = [(a, s, seed) for a in UL["algorithms"] for s in UL["samplers"] for seed in UL["seeds"]]


wildcard_constraints:
    role="target|retain",
    algorithm="|".join(UL["algorithms"]),
    sampler="|".join(UL["samplers"]),
    seed=r"\d+",
    truth="update_count|update_count_sgd",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/mrd.smk"
include: "workflow/rules/unlearn.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        f"{R}/report.md",
        f"{R}/metrics.json",
