"""The one loader for every data source: TOFU-format JSON Lines, checked before any training.

Every split is a file `<split>.json` with one JSON object per line holding `question` and
`answer`; `*_perturbed` splits add `perturbed_answer` (a list of wrong answers) and, for the
forget and retain evaluation splits, `paraphrased_answer`. The synthetic generator and real TOFU
both arrive through `read_split`; a prepared data folder's manifest says where the files are and
which split plays which role.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..io import read_json, write_json

REQUIRED = ("question", "answer")
REQUIRED_PERTURBED = REQUIRED + ("perturbed_answer",)


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
                if key in row and (not isinstance(row[key], str) or not row[key].strip()):
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
    utility: dict[str, list[dict]] = field(default_factory=dict)  # real_authors / world_facts (TOFU)


def _keys(rows: list[dict]) -> set[tuple[str, str]]:
    return {(r["question"], r["answer"]) for r in rows}


MANIFEST = "manifest.json"
ROLES = ("full", "forget", "retain", "holdout", "forget_eval", "retain_eval")
UTILITY_ROLES = ("real_authors", "world_facts")


def write_manifest(data_dir: str | Path, *, root: str, splits: dict[str, str], subset: dict | None = None,
                   checksums: dict | None = None) -> None:
    """A prepared data folder names where its split files are (`root`, relative to the folder or
    absolute), which split plays which role, and which leading rows of a split the study uses
    (`subset`: role -> rows, for a feasible run on a CPU), so real data is read where it is,
    never copied. `checksums` (sha256 per file) lets a reviewer check it is the same data."""
    write_json(Path(data_dir) / MANIFEST, {"root": root, "splits": splits, "subset": subset or {},
                                           "sha256": checksums or {}})


def _first(rows: list[dict], n: int | None, what: str) -> list[dict]:
    if n is not None and n > len(rows):
        raise DataError(f"{what} has {len(rows)} rows; the study asks for its first {n}")
    return rows if n is None else rows[:n]


def load_study_data(data_dir: str | Path) -> StudyData:
    data_dir = Path(data_dir)
    if not (data_dir / MANIFEST).is_file():
        raise DataError(f"{data_dir} is not a prepared data folder ({MANIFEST} missing)")
    manifest = read_json(data_dir / MANIFEST)
    root, names, subset = data_dir / manifest["root"], manifest["splits"], manifest.get("subset", {})
    data = StudyData(**{role: read_split(root / f"{names[role]}.json") for role in ROLES},
                     utility={role: read_split(root / f"{names[role]}.json") for role in UTILITY_ROLES if role in names})
    for role in ("forget_eval", "retain_eval"):
        missing = [i + 1 for i, r in enumerate(getattr(data, role)) if "paraphrased_answer" not in r]
        if missing:
            raise DataError(f"{root / names[role]}.json:{missing[0]}: missing field(s) ['paraphrased_answer']")

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

    # The study's slice: leading rows (whole authors on TOFU); `full` is then forget + that retain.
    data.retain = _first(data.retain, subset.get("retain"), names["retain"])
    data.retain_eval = _first(data.retain_eval, subset.get("retain_eval"), names["retain_eval"])
    data.utility = {role: _first(rows, subset.get("utility"), names[role]) for role, rows in data.utility.items()}
    kept = _keys(data.forget) | _keys(data.retain)
    data.full = [r for r in data.full if (r["question"], r["answer"]) in kept]
    stray = _keys(data.retain_eval) - _keys(data.retain)
    if stray:
        raise DataError(f"{len(stray)} sample(s) of {names['retain_eval']} are not in the study's "
                        f"{names['retain']} (raise data.tofu.retain_authors or lower data.retain_eval_size)")
    return data
