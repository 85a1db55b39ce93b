from pathlib import Path

import pytest

from mrd_unlearning.config import ConfigError, load_config, study_data_configs, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "full.yaml", "tofu_smollm2.yaml", "paper.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(ROOT / "config" / name)
    assert cfg["mrd"]["statistic"] == "signed"  # default filled in
    assert cfg["unlearning"]["steps"] >= 1


def test_defaults_fill_nested_sections():
    cfg = validate_config({"name": "x"})
    assert cfg["mrd"]["sigma"] == "auto" and cfg["data"]["synthetic"]["n_people"] == 40


@pytest.mark.parametrize("patch, expected", [
    ({"mrd": {"statistic": "median"}}, ["mrd.statistic", "'signed'", "'abs'"]),
    ({"mrd": {"sigma": "big"}}, ["mrd.sigma", "auto"]),
    ({"mrd": {"Kay": 3}}, ["'mrd'", "Kay", "allowed keys"]),
    ({"unlearning": {"samplers": ["uniform", "nope"]}}, ["unlearning.samplers.1", "'uniform'"]),
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
    ({"model": {"dtype": "float16"}}, ["model.dtype", "'bfloat16'"]),
    ({"data": {"retain_eval_size": None}}, ["data.retain_eval_size"]),
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
