"""Study configuration: one schema, validated (and defaults filled) before any compute."""
from __future__ import annotations

import copy
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(str(files("mrd_unlearning") / "config.schema.yaml"))


class ConfigError(ValueError):
    """A configuration value is not allowed; the message names the key."""


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _with_defaults(validator_class):
    """jsonschema's documented recipe: fill `default`s while validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"config key '{key}': unknown key(s) {unknown}; allowed keys: {allowed}"
    if error.validator == "enum":
        return f"config key '{key}': {error.instance!r} is not allowed; allowed values: {error.validator_value}"
    if error.validator == "oneOf":
        options = [s.get("const", s.get("type")) for s in error.validator_value]
        return f"config key '{key}': {error.instance!r} is not allowed; expected one of {options}"
    return f"config key '{key}': {error.message}"


def validate_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Return a validated copy of `raw` with every default filled in, or raise ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a configuration must be a mapping, got {type(raw).__name__}")
    cfg = copy.deepcopy(raw)
    errors = sorted(_Validator(load_schema()).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_describe(e) for e in errors))
    if cfg["data"]["source"] == "synthetic" and cfg["data"]["retain_eval_size"] is None:
        raise ConfigError("config key 'data.retain_eval_size': synthetic data needs a number (null means all of TOFU's)")
    model = cfg["model"]
    if model["source"] == "pretrained" and not model["name_or_path"]:
        raise ConfigError("config key 'model.name_or_path': model.source 'pretrained' needs a hub id or a local path")
    if model["source"] == "tiny" and model["hidden_size"] % model["num_heads"]:
        raise ConfigError(
            f"config key 'model.num_heads': {model['num_heads']} must divide model.hidden_size ({model['hidden_size']})"
        )
    names = [v["name"] for v in cfg["mrd"]["validation"]["variants"]]
    if len(set(names)) != len(names) or "main" in names:
        raise ConfigError(f"config key 'mrd.validation.variants': names must be unique and not 'main', got {names}")
    return cfg


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    return validate_config(yaml.safe_load(path.read_text()) or {})


def study_data_configs(cfg: dict[str, Any]) -> dict[str, dict]:
    """Study name -> its data section. A TOFU config with several forget splits is one study
    per split, named <name>_<split> (each with its own target and retain model); any other
    config is the one study <name>."""
    data = cfg["data"]
    splits = data["tofu"]["forget_split"] if data["source"] == "tofu" else None
    if not isinstance(splits, list):
        return {cfg["name"]: data}
    if len(splits) == 1:
        return {cfg["name"]: {**data, "tofu": {**data["tofu"], "forget_split": splits[0]}}}
    return {f"{cfg['name']}_{split}": {**data, "tofu": {**data["tofu"], "forget_split": split}} for split in splits}
