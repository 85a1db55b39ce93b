import re
from pathlib import Path

import pytest

import yaml

from mrd_unlearning.config import ConfigError, load_config, load_schema, schema_markdown, study_data_configs, validate_config

ROOT = Path(__file__).resolve().parents[1]


OVERLAYS = {"smoke_tofu.yaml": ["smoke.yaml", "smoke_tofu.yaml"],  # an overlay on smoke.yaml
            **{f"{b}_gpu.yaml": ["paper.yaml", f"{b}_gpu.yaml"] for b in ("muse_news", "wmdp", "whp")},  # on paper.yaml
            "local_benchmarks.yaml": ["whp_smollm2.yaml", "local_benchmarks.yaml"],
            "local_tofu.yaml": ["tofu_smollm2.yaml", "local_tofu.yaml"]}


def as_snakemake_runs_it(name: str) -> dict:
    """A shipped configuration merged over config/config.yaml, as `--configfile` does."""
    from snakemake.utils import update_config

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for part in OVERLAYS.get(name, [name]):
        update_config(cfg, yaml.safe_load((ROOT / "config" / part).read_text()))
    return validate_config(cfg)


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "smoke_tofu.yaml", "full.yaml", "tofu_smollm2.yaml",
                                  "tofu_smollm2_forget01.yaml", "paper.yaml", "muse_news_smollm2.yaml",
                                  "wmdp_smollm2.yaml", "whp_smollm2.yaml", "muse_news_gpu.yaml", "wmdp_gpu.yaml",
                                  "whp_gpu.yaml", "local_benchmarks.yaml", "local_tofu.yaml"])
def test_shipped_configs_validate(name):
    cfg = as_snakemake_runs_it(name)
    assert cfg["mrd"]["statistic"] == "signed"  # default filled in
    steps = cfg["unlearning"]["steps"]
    assert all(s >= 1 for s in (steps.values() if isinstance(steps, dict) else [steps]))


def test_a_budget_per_algorithm_must_name_every_algorithm():
    with pytest.raises(ConfigError, match="unlearning.steps.*missing \\['npo'\\]"):
        validate_config({"name": "x", "unlearning": {"algorithms": ["ga", "npo"], "steps": {"ga": 10}}})
    with pytest.raises(ConfigError, match="unknown \\['kl'\\]"):
        validate_config({"name": "x", "unlearning": {"algorithms": ["ga"], "steps": {"ga": 10, "kl": 5}}})


def test_config_readme_is_current():
    """config/README.md is generated from the schema: regenerate it with
    `python -m mrd_unlearning.config config/README.md`."""
    assert (ROOT / "config" / "README.md").read_text() == schema_markdown()
    shipped = sorted(p.name for p in (ROOT / "config").glob("*.yaml"))
    assert [name for name in shipped if f"`{name}`" not in schema_markdown()] == []  # every one named


SCHEMA_KEYWORDS = {"$ref", "additionalProperties", "default", "description", "enum", "exclusiveMaximum",
                   "exclusiveMinimum", "items", "maximum", "minItems", "minLength", "minimum", "oneOf", "pattern",
                   "properties", "required", "type", "uniqueItems"}


def test_every_schema_description_is_a_whole_sentence():
    """An unquoted comma in a YAML flow mapping cuts a description short (the rest becomes stray
    keys): every property holds JSON Schema keywords only, and every description ends a sentence."""
    import yaml
    from importlib.resources import files

    schema = yaml.safe_load(files("mrd_unlearning").joinpath("config.schema.yaml").read_text())
    checked = 0

    def walk(node: dict, path: str) -> None:
        nonlocal checked
        for key, prop in node.get("properties", {}).items():
            where = f"{path}{key}"
            assert set(prop) <= SCHEMA_KEYWORDS, (where, set(prop) - SCHEMA_KEYWORDS)
            if "description" in prop:
                assert isinstance(prop["description"], str) and prop["description"].rstrip().endswith((".", ")")), where
                checked += 1
            walk(prop, f"{where}.")
            walk(prop.get("items", {}), f"{where}[].")

    walk(schema, "")
    assert checked > 100


def test_defaults_fill_nested_sections():
    cfg = validate_config({"name": "x"})
    assert cfg["mrd"]["sigma"] == "auto" and cfg["data"]["synthetic"]["n_people"] == 40


@pytest.mark.parametrize("patch, expected", [
    ({"mrd": {"statistic": "median"}}, ["mrd.statistic", "'signed'", "'abs'"]),
    ({"mrd": {"sigma": "big"}}, ["mrd.sigma", "auto"]),
    ({"mrd": {"Kay": 3}}, ["'mrd'", "Kay", "allowed keys"]),
    ({"unlearning": {"samplers": ["uniform", "nope"]}}, ["unlearning.samplers.1", "mrd_curriculum", "@score"]),
    ({"unlearning": {"samplers": ["mrd@nope"]}}, ["unlearning.samplers.0", "'mrd@nope'", "memorization"]),
    ({"unlearning": {"samplers": ["mrd_refresh@loss"]}}, ["unlearning.samplers.0", "mrd_refresh"]),
    ({"finetune": {"lr": -1}}, ["finetune.lr"]),
    ({"name": "a b"}, ["'name'"]),
    ({"model": {"hidden_size": 30, "num_heads": 4}}, ["model.num_heads"]),
    ({"mrd": {"validation": {"variants": [{"name": "v", "statistic": "median"}]}}},
     ["mrd.validation.variants.0.statistic", "'abs'"]),
    ({"mrd": {"validation": {"variants": [{"name": "v"}, {"name": "v"}]}}}, ["mrd.validation.variants", "unique"]),
    ({"unlearning": {"algorithms": ["dpo"]}}, ["unlearning.algorithms.0", "'npo_rt'"]),
    ({"data": {"source": "wmdp"}}, ["data.source", "'tofu'"]),
    ({"data": {"source": "tofu", "tofu": {"forget_split": "forget20"}}}, ["data.tofu.forget_split", "forget20"]),
    ({"model": {"source": "pretrained"}}, ["model.name_or_path"]),
    ({"model": {"precision": "float16"}}, ["model.precision", "'bf16-mixed'"]),
    ({"model": {"dtype": "bfloat16"}}, ["model.dtype", "model.precision"]),
    ({"finetune": {"strategy": "zero3"}}, ["finetune.strategy", "'fsdp'"]),
    ({"data": {"retain_eval_size": None}}, ["data.retain_eval_size"]),
    ({"replicates": [0, 0]}, ["'replicates'", "unique"]),
    ({"finetune": {"lr_schedule": "cosine"}}, ["finetune.lr_schedule", "'linear'"]),
    ({"mrd": {"validation": {"replicates": "some"}}}, ["mrd.validation.replicates", "'first'"]),
])
def test_bad_values_name_the_key_and_allowed_values(patch, expected):
    with pytest.raises(ConfigError) as err:
        validate_config({"name": "x", **patch})
    for text in expected:
        assert text in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_one_study_per_forget_split():
    paper = load_config(ROOT / "config" / "paper.yaml")
    studies = study_data_configs(paper)
    assert list(studies) == ["paper_forget01", "paper_forget05", "paper_forget10"]
    assert [d["tofu"]["forget_split"] for d in studies.values()] == ["forget01", "forget05", "forget10"]
    assert list(study_data_configs(load_config(ROOT / "config" / "tofu_smollm2.yaml"))) == ["tofu_smollm2"]
    assert list(study_data_configs(validate_config({"name": "x"}))) == ["x"]


def test_the_smallest_effects_the_statistics_page_states_are_the_schemas_defaults():
    """C1 has two numbers (its threshold, and the spread its power is measured at): the page
    states both as the configuration sets them."""
    page = " ".join((ROOT / "docs" / "statistics.md").read_text().split())
    stats = load_schema()["properties"]["statistics"]["properties"]
    defaults = stats["spread_threshold"]["default"], stats["calibration"]["properties"]["c1_planted_spread"]["default"]
    stated = re.search(r"C1: a 90th/10th percentile spread of ([\d.]+) .*? planted above it, ([\d.]+) by default "
                       r"\(`statistics.calibration.c1_planted_spread`\)", page)
    assert stated, "docs/statistics.md: C1's smallest effect and planted spread"
    assert (float(stated[1]), float(stated[2])) == defaults
