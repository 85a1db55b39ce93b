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
    if error.validator == "pattern":
        return f"config key '{key}': {error.instance!r} is not allowed; allowed values: {schema.get('description', error.validator_value)}"
    if error.validator == "oneOf":
        options = [s.get("const", s.get("type")) for s in error.validator_value]
        return f"config key '{key}': {error.instance!r} is not allowed; expected one of {options}"
    return f"config key '{key}': {error.message}"


def validate_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Return a validated copy of `raw` with every default filled in, or raise ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a configuration must be a mapping, got {type(raw).__name__}")
    cfg = copy.deepcopy(raw)
    if "dtype" in (cfg.get("model") or {}):
        raise ConfigError("config key 'model.dtype' was replaced by 'model.precision'; allowed values: "
                          "['auto', 'bf16-mixed', 'fp32', 'bf16'] (auto: bf16-mixed on CUDA, fp32 on a CPU)")
    errors = sorted(_Validator(load_schema()).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_describe(e) for e in errors))
    if cfg["data"]["source"] == "synthetic" and cfg["data"]["retain_eval_size"] is None:
        raise ConfigError("config key 'data.retain_eval_size': synthetic data needs a number (null means all of TOFU's)")
    data = cfg["data"]
    if data["source"] == "local":
        named = data["local"]["splits"]
        missing = [r for r in ("forget", "retain", "holdout", "forget_eval", "retain_eval") if r not in named]
        if not data["local"]["path"] or missing:
            raise ConfigError("config key 'data.local': data.source 'local' needs a path and a file for each of the "
                              f"roles [forget, retain, holdout, forget_eval, retain_eval]; missing: "
                              f"{(['path'] if not data['local']['path'] else []) + missing}")
    if data["source"] == "benchmark":
        bench = data["benchmark"]
        if "name" not in bench or "splits" not in bench:
            raise ConfigError("config key 'data.benchmark': data.source 'benchmark' needs a name (muse_news, muse_books, "
                              "wmdp, whp) and splits (forget, retain, holdout as 'benchmark:config/split')")
        from .data.benchmarks import BENCHMARKS, parse_split  # light: no model library
        from .data.loader import DataError
        try:
            read = {parse_split(bench["splits"][role], f"data.benchmark.splits.{role}")[0] for role in bench["splits"]}
        except DataError as err:
            raise ConfigError(str(err)) from None
        unknown = sorted(set(bench["paths"]) - set(BENCHMARKS))
        if unknown:
            raise ConfigError(f"config key 'data.benchmark.paths.{unknown[0]}': not a benchmark; allowed: {sorted(BENCHMARKS)}")
        offline = sorted(b for b in read | {bench["name"]} if b not in bench["paths"] and BENCHMARKS[b]["hub"] is None)
        if offline:
            raise ConfigError(f"config key 'data.benchmark.paths': {offline} is not on the hub; give its local folder")
    # (local text data is refused the same way when the data are read)
    text = (data["source"] == "synthetic" and data["synthetic"]["form"] == "text") or (
        data["source"] == "benchmark" and data["benchmark"].get("name") in ("muse_news", "muse_books", "whp"))
    if text and "idknll" in cfg["unlearning"]["algorithms"]:
        raise ConfigError("config key 'unlearning.algorithms': 'idknll' answers questions with refusals; text data "
                          "has no questions (allowed with text: ga, graddiff, kl, npo, npo_rt, simnpo, wga, rmu)")
    model = cfg["model"]
    if model["source"] == "pretrained" and not model["name_or_path"]:
        raise ConfigError("config key 'model.name_or_path': model.source 'pretrained' needs a hub id or a local path")
    if model["source"] == "tiny" and model["hidden_size"] % model["num_heads"]:
        raise ConfigError(
            f"config key 'model.num_heads': {model['num_heads']} must divide model.hidden_size ({model['hidden_size']})"
        )
    if cfg["finetune"]["strategy"] == "fsdp" and model["lora"]["r"]:
        raise ConfigError("config key 'finetune.strategy': 'fsdp' shards full fine-tuning; with LoRA (model.lora.r > 0) "
                          "the trainable state is small: use 'ddp'")
    unlearning = cfg["unlearning"]
    if isinstance(unlearning["steps"], dict) and unlearning["epochs"] is None:
        algorithms = unlearning["algorithms"]
        missing = [a for a in algorithms if a not in unlearning["steps"]]
        unknown = sorted(set(unlearning["steps"]) - set(algorithms))
        if missing or unknown:
            raise ConfigError(f"config key 'unlearning.steps': a map needs exactly the algorithms {algorithms}; "
                              f"missing {missing}, unknown {unknown}")
    c4 = cfg["statistics"]["c4"]
    samplers = unlearning["samplers"]
    if c4["algorithm"] is not None and c4["algorithm"] not in unlearning["algorithms"]:
        raise ConfigError(f"config key 'statistics.c4.algorithm': {c4['algorithm']!r} is not among "
                          f"unlearning.algorithms {unlearning['algorithms']}")
    if c4["sampler"] is not None and c4["sampler"] not in samplers:
        raise ConfigError(f"config key 'statistics.c4.sampler': {c4['sampler']!r} is not among unlearning.samplers "
                          f"{samplers}")
    chosen = primary_arm(c4, unlearning["algorithms"], samplers)  # resolved once: every stage reads the same arms
    if chosen is not None:
        c4["algorithm"], c4["sampler"] = chosen
    names = [v["name"] for v in cfg["mrd"]["validation"]["variants"]]
    if len(set(names)) != len(names) or "main" in names:
        raise ConfigError(f"config key 'mrd.validation.variants': names must be unique and not 'main', got {names}")
    return _sorted(cfg)


def _sorted(value):
    """Mappings with their keys in one order, whatever order the files and defaults gave them:
    Snakemake compares a rule's params as text, so the same values must print the same."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    return validate_config(yaml.safe_load(path.read_text()) or {})


BASE_CONFIG = Path("config/config.yaml")  # the Snakefile's `configfile:`; --configfile merges over it


def merged_config(base: dict, over: dict) -> dict:
    """Snakemake's rule for --configfile: nested mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged_config(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def study_config(paths: str | Path | list, base: str | Path = BASE_CONFIG) -> dict[str, Any]:
    """A study's configuration as the workflow sees it (`--configfile a.yaml [b.yaml ...]`): each
    file merged in turn over the base configuration (later ones win, as in Snakemake), then
    validated. The command-line tools (plan, budget, timing, snapshot) read it."""
    files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    base = Path(base)
    for f in (*files, base):
        if not f.is_file():
            raise ConfigError(f"configuration file not found: {f}")
    raw = yaml.safe_load(base.read_text()) or {}
    for f in files:
        if f.resolve() != base.resolve():
            raw = merged_config(raw, yaml.safe_load(f.read_text()) or {})
    return validate_config(raw)


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


# --- config/README.md: every key, from the schema -------------------------------------------------

def _yaml_text(value: Any) -> str:
    """A value as a configuration file spells it (true, null, [a, b]), on one line: a table cell."""
    return yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip().removesuffix("...").strip()


def _type_text(schema: dict, defs: dict) -> str:
    if "$ref" in schema:
        schema = {**defs[schema["$ref"].split("/")[-1]], **{k: v for k, v in schema.items() if k != "$ref"}}
    if "enum" in schema:
        return " \\| ".join(f"`{_yaml_text(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if "oneOf" in schema:
        return " or ".join(_type_text(option, defs) for option in schema["oneOf"])
    kind = schema.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join(k if k != "null" else "`null`" for k in kinds if k)
    if kind == "array" and "items" in schema:
        text = f"list of {_type_text(schema['items'], defs)}"
    if kind == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        text = f"map of {_type_text(schema['additionalProperties'], defs)}"
    bounds = [f"{op} {schema[key]}" for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                                                    ("exclusiveMaximum", "<")) if key in schema]
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _describe_rows(properties: dict, defs: dict, prefix: str = "") -> list[str]:
    rows = []
    for key, schema in properties.items():
        name = f"{prefix}{key}"
        if "$ref" in schema:
            schema = {**defs[schema["$ref"].split("/")[-1]], **schema}
        if schema.get("type") == "object" and "properties" in schema:
            rows.append(f"| **`{name}`** | section | | {' '.join(str(schema.get('description', '')).split())} |")
            rows += _describe_rows(schema["properties"], defs, f"{name}.")
            continue
        if "default" in schema:
            shown = f"`{_yaml_text(schema['default'])}`"
        else:
            shown = "required" if not prefix else ""
        description = " ".join(str(schema.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {_type_text(schema, defs)} | {shown} | {description} |")
    return rows


def schema_markdown() -> str:
    """config/README.md: every key of the schema with its allowed values, default and meaning."""
    schema = load_schema()
    lines = [
        "# Configuration keys",
        "",
        "Generated from `src/mrd_unlearning/config.schema.yaml` by `python -m mrd_unlearning.config "
        "config/README.md` (a test checks it is current). A study configuration names only what it changes:",
        "a `--configfile` given to Snakemake is merged over `config/config.yaml` (the default study), whose",
        "values it inherits, and the schema's defaults below fill every key neither sets; the workflow validates",
        "the whole configuration against the schema before any job is planned.",
        "",
        "Shipped configurations: `config.yaml` (the default study), `full.yaml` (every algorithm x 8 samplers),",
        "`tofu_smollm2.yaml` (TOFU + SmolLM2 on a CPU), `tofu_smollm2_forget01.yaml` (the same on TOFU's forget01),",
        "`local_tofu.yaml` (an overlay: TOFU from a local folder instead of the hub), `local_benchmarks.yaml` (the same",
        "for MUSE, WMDP and Who's Harry Potter), `paper.yaml` (the paper's 7B",
        "setting, GPUs),",
        "`muse_news_smollm2.yaml`, `wmdp_smollm2.yaml`, `whp_smollm2.yaml` (MUSE-News, WMDP, Who's Harry Potter + "
        "SmolLM2 on a CPU),",
        "`muse_news_gpu.yaml`, `wmdp_gpu.yaml`, `whp_gpu.yaml` (their full sets: overlays on `paper.yaml`, GPUs),",
        "`smoke.yaml`, `smoke_tofu.yaml` and `smoke_text.yaml` (tiny, for the tests).",
        "",
        "| key | allowed | default | meaning |",
        "|---|---|---|---|",
        *_describe_rows(schema["properties"], schema.get("$defs", {})),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m mrd_unlearning.config config/README.md")
    Path(sys.argv[1]).write_text(schema_markdown())


def arm_seeds(cfg: dict[str, Any], algorithm: str, sampler: str) -> list[int]:
    """The unlearning seeds one (algorithm, sampler) arm runs: every arm `unlearning.seeds`, and
    C4's two primary arms (its algorithm's uniform and weighted runs) `statistics.c4.seeds` too."""
    c4, ul = cfg["statistics"]["c4"], cfg["unlearning"]
    chosen = primary_arm(c4, ul["algorithms"], ul["samplers"])
    primary = chosen is not None and algorithm == chosen[0] and sampler in ("uniform", chosen[1])
    return sorted(set(ul["seeds"]) | set(c4["seeds"] or [])) if primary else list(ul["seeds"])


PAPER_SAMPLERS = ("mrd", "mrd_curriculum", "mrd_refresh")  # the paper's MRD-weighted samplers


def primary_arm(c4: dict, algorithms: list[str], samplers: list[str]) -> tuple[str, str] | None:
    """C4's primary comparison as (algorithm, weighted sampler), compared with uniform: the
    declared ones (`statistics.c4`), else the first algorithm and `mrd` (or the first of the
    paper's samplers that runs). None without uniform or such a sampler."""
    if "uniform" not in samplers or not algorithms:
        return None
    sampler = c4["sampler"] or next((s for s in PAPER_SAMPLERS if s in samplers), None)
    return None if sampler is None else (c4["algorithm"] or algorithms[0], sampler)
