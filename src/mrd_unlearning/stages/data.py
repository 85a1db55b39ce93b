"""Rule prepare_data: the study's data folder. Light on purpose: no model library is imported."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..data import benchmarks, synthetic, tofu
from ..data.loader import DataError, load_study_data, write_manifest
from ..io import atomic_path


def prepare_data(out_dir: str, *, data_cfg: dict, seed: int) -> None:
    """A data folder with a manifest: synthetic data is generated into it; TOFU and local folders
    are read where they lie, or TOFU fetched from the hub into it when no path is given. Every
    check of the loader runs before anything trains on it."""
    prefix = data_cfg.get("text_prefix_tokens", 0)
    with atomic_path(out_dir) as tmp:
        if data_cfg["source"] == "synthetic":
            synthetic.generate(tmp, seed=seed, forget_percent=data_cfg["forget_percent"],
                               retain_eval_size=data_cfg["retain_eval_size"], **data_cfg["synthetic"])
            stems = synthetic.split_names(data_cfg["forget_percent"], data_cfg["synthetic"].get("form", "qa"))
            write_manifest(tmp, root=".", splits={role: f"{stem}.json" for role, stem in stems.items()},
                           text_prefix_tokens=prefix)
            load_study_data(tmp)
        elif data_cfg["source"] == "tofu":
            _prepare_tofu(tmp, Path(out_dir), data_cfg["tofu"], data_cfg["retain_eval_size"], prefix, seed)
        elif data_cfg["source"] == "benchmark":
            _prepare_benchmark(tmp, data_cfg["benchmark"], data_cfg["retain_eval_size"], prefix)
        else:
            local = data_cfg["local"]
            root = Path(local["path"]).resolve()
            if not root.is_dir():
                raise DataError(f"config key 'data.local.path': no folder at {root}")
            for role, name in local["splits"].items():
                if not (root / name).is_file():
                    raise DataError(f"config key 'data.local.splits.{role}': no file {root / name}")
            _point_at(tmp, Path(out_dir), root, dict(local["splits"]), {"retain_eval": data_cfg["retain_eval_size"]},
                      prefix, relative=True, source="local")


def _point_at(tmp: Path, final: Path, root: Path, files: dict[str, str], subset: dict, prefix: int,
              relative: bool, source: str, group_size: int | None = None) -> None:
    """A manifest naming the files where they are, with their checksums, checked by the loader;
    then (`relative`) rewritten relative to the final folder, so the results tree and the data
    can move together."""
    manifest = dict(splits=files, subset=subset, text_prefix_tokens=prefix, source=source, group_size=group_size,
                    checksums={name: tofu.sha256(root / name) for name in sorted(set(files.values()))})
    write_manifest(tmp, root=str(root), **manifest)
    load_study_data(tmp)
    write_manifest(tmp, root=os.path.relpath(root, final.resolve()) if relative else ".", **manifest)


def _prepare_tofu(tmp: Path, final: Path, cfg: dict, retain_eval_size: int | None, prefix: int, seed: int) -> None:
    """TOFU: a preset of a local folder (its file names, its 20-QA authors)."""
    names = tofu.split_names(cfg["forget_split"])
    stems = sorted(set(names.values()))
    if cfg["path"] is None:
        tofu.fetch_from_hub(cfg["hub_id"], stems, tmp)
        root = tmp
    else:
        root = Path(cfg["path"]).resolve()
        if not root.is_dir():
            raise DataError(f"config key 'data.tofu.path': no TOFU folder at {root}; set it to your copy's folder, "
                            f"or to null to fetch {cfg['hub_id']} from the hub")
    for stem in stems:
        if not (root / f"{stem}.json").is_file():
            raise DataError(f"TOFU split file missing: {root / stem}.json (needed for {cfg['forget_split']}; "
                            f"a TOFU-format folder with other files or without utility splits: data.source local)")
    retain = None if cfg["retain_authors"] is None else cfg["retain_authors"] * tofu.AUTHOR_QA
    subset = {"retain": retain, "retain_eval": retain_eval_size, "utility": cfg["utility_eval_size"]}
    if cfg.get("per_author") is not None:  # the same rows of forget, its evaluation file and holdout
        chosen = tofu.questions_per_author(cfg["forget_split"], cfg["per_author"], seed)
        subset |= {"forget": chosen, "forget_eval": chosen, "holdout": chosen}
    _point_at(tmp, final, root, {role: f"{stem}.json" for role, stem in names.items()}, subset, prefix,
              relative=cfg["path"] is not None, source="tofu", group_size=tofu.AUTHOR_QA)


def _write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _prepare_benchmark(tmp: Path, cfg: dict, retain_eval_size: int | None, prefix: int) -> None:
    """MUSE, WMDP or WHP: the study's samples cut from the published splits (data.benchmark) and
    the evaluation sets it is scored on, written into the data folder (the cut is the study's, so
    it is data); the manifest names each published file read, with its checksum."""
    roles, sets, sources = benchmarks.benchmark_study(cfg)
    for role, rows in roles.items():
        _write_rows(tmp / f"{role}.jsonl", rows)
    for name, rows in sets.items():
        _write_rows(tmp / "benchmark" / f"{name}.jsonl", rows)
    splits = {"forget": "forget.jsonl", "retain": "retain.jsonl", "holdout": "holdout.jsonl",
              "forget_eval": "forget.jsonl", "retain_eval": "retain.jsonl"}
    # the retain set's size follows from the cut: evaluate at most all of it
    retain_eval = None if retain_eval_size is None else min(retain_eval_size, len(roles["retain"]))
    write_manifest(tmp, root=".", splits=splits, subset={"retain_eval": retain_eval}, text_prefix_tokens=prefix,
                   source="benchmark", checksums={spec: tofu.sha256(Path(path)) if Path(path).is_file() else path
                                                  for spec, path in sources.items()},
                   benchmark={"name": cfg["name"], "sets": {name: f"benchmark/{name}.jsonl" for name in sets},
                              "cut": {k: cfg.get(k) for k in ("splits", "documents", "document_words", "chunk_words")}})
    load_study_data(tmp)
