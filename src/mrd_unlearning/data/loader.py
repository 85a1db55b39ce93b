"""The one loader for every data source: TOFU-format JSON Lines, checked before any training.

Every split is a file `<split>.json` with one JSON object per line holding `question` and
`answer`; `*_perturbed` splits add `paraphrased_answer` and `perturbed_answer` (a list of wrong
answers). The synthetic generator and real TOFU both arrive through `read_split`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..io import read_json, write_json
from .synthetic import split_names

REQUIRED = ("question", "answer")
REQUIRED_PERTURBED = REQUIRED + ("paraphrased_answer", "perturbed_answer")


class DataError(ValueError):
    """A data file is missing, malformed, or the splits contradict each other."""


def read_split(path: str | Path) -> list[dict]:
    """Read one TOFU-format split; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    required = REQUIRED_PERTURBED if path.stem.endswith("_perturbed") else REQUIRED
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: malformed JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise DataError(f"{path}:{lineno}: missing field(s) {missing}")
            for key in ("question", "answer", "paraphrased_answer"):
                if key in required and (not isinstance(row[key], str) or not row[key].strip()):
                    raise DataError(f"{path}:{lineno}: field '{key}' must be a non-empty string")
            if "perturbed_answer" in required and (
                not isinstance(row["perturbed_answer"], list) or not row["perturbed_answer"]
                or not all(isinstance(a, str) and a.strip() for a in row["perturbed_answer"])
            ):
                raise DataError(f"{path}:{lineno}: field 'perturbed_answer' must be a non-empty list of strings")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: the split is empty")
    return rows


@dataclass
class StudyData:
    """The splits one study uses, already cross-checked."""

    full: list[dict]
    forget: list[dict]
    retain: list[dict]
    holdout: list[dict]
    forget_eval: list[dict]  # forget samples with paraphrased and wrong answers, aligned with `forget`
    retain_eval: list[dict]  # retain samples with paraphrased and wrong answers


def _keys(rows: list[dict]) -> set[tuple[str, str]]:
    return {(r["question"], r["answer"]) for r in rows}


MANIFEST = "manifest.json"


def write_manifest(data_dir: str | Path, *, root: str, forget_percent: int) -> None:
    """A prepared data folder names where its split files are (`root`, relative to the folder or
    absolute) and which split plays which role, so real data is read where it is, never copied."""
    write_json(Path(data_dir) / MANIFEST, {"root": root, "splits": split_names(forget_percent)})


def load_study_data(data_dir: str | Path) -> StudyData:
    data_dir = Path(data_dir)
    if not (data_dir / MANIFEST).is_file():
        raise DataError(f"{data_dir} is not a prepared data folder ({MANIFEST} missing)")
    manifest = read_json(data_dir / MANIFEST)
    root, names = data_dir / manifest["root"], manifest["splits"]
    data = StudyData(**{role: read_split(root / f"{stem}.json") for role, stem in names.items()})

    overlap = _keys(data.forget) & _keys(data.retain)
    if overlap:
        raise DataError(f"{len(overlap)} sample(s) are in both {names['forget']} and {names['retain']}, "
                        f"e.g. {next(iter(overlap))[0]!r}")
    leaked = _keys(data.holdout) & _keys(data.full)
    if leaked:
        raise DataError(f"{len(leaked)} holdout sample(s) also appear in {names['full']} (training data), "
                        f"e.g. {next(iter(leaked))[0]!r}")
    if _keys(data.forget) | _keys(data.retain) != _keys(data.full):
        raise DataError(f"{names['forget']} + {names['retain']} must together be exactly {names['full']}")
    if [r["question"] for r in data.forget_eval] != [r["question"] for r in data.forget]:
        raise DataError(f"{names['forget_eval']} is not aligned with {names['forget']} (same questions, same order)")
    stray = _keys(data.retain_eval) - _keys(data.retain)
    if stray:
        raise DataError(f"{len(stray)} sample(s) of {names['retain_eval']} are not in {names['retain']}")
    return data
