"""The one loader for every data source: TOFU-format JSON Lines, checked before any training.

Every split is a JSON Lines file of one of two kinds. QA rows hold `question` and `answer`; the
evaluation splits add `paraphrased_answer` and `perturbed_answer` (a list of wrong answers), and
TOFU's utility splits `perturbed_answer`. Text rows (MUSE's and WMDP's corpora) hold `text` only.
The synthetic generator, TOFU and any local folder arrive through `read_split`; a prepared data
folder's manifest says where the files are and which file plays which role.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..io import read_json, write_json

REQUIRED = ("question", "answer")
REQUIRED_PERTURBED = REQUIRED + ("perturbed_answer",)
TEXT = "text"
PREFIX = "_prefix"  # on text rows: tokens of the text that are context, not scored (data.text_prefix_tokens)
CUT = "_cut"  # on text rows: true for a piece cut from its document before the end: no EOS follows it
GROUP = "group"  # samples that stand together (an author's QA, a person's facts): optional in the files


class DataError(ValueError):
    """A data file is missing, malformed, or the splits contradict each other."""


def sample_kind(row: dict) -> str:
    """'text' for a row of plain text, 'qa' for a question-answer pair."""
    return "text" if TEXT in row and "question" not in row else "qa"


def sample_key(row: dict) -> tuple[str, str]:
    """What identifies a sample across splits (overlap and leak checks, positions in training)."""
    return ("", row[TEXT]) if sample_kind(row) == "text" else (row["question"], row["answer"])


def _check_row(row, path: Path, lineno: int, perturbed: bool, kind: str | None) -> str:
    if not isinstance(row, dict):
        raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
    this = sample_kind(row)
    if kind is not None and this != kind:
        raise DataError(f"{path}:{lineno}: a {this} row among {kind} rows; a split is all question-answer rows "
                        f"(question, answer) or all text rows (text), not a mix")
    required = (TEXT,) if this == "text" else REQUIRED_PERTURBED if perturbed else REQUIRED
    missing = [k for k in required if k not in row]
    if missing:
        raise DataError(f"{path}:{lineno}: missing field(s) {missing}")
    for key in ("question", "answer", "paraphrased_answer", TEXT):
        if key in row and (not isinstance(row[key], str) or not row[key].strip()):
            raise DataError(f"{path}:{lineno}: field '{key}' must be a non-empty string")
    if this == "qa" and perturbed and (
        not isinstance(row["perturbed_answer"], list) or not row["perturbed_answer"]
        or not all(isinstance(a, str) and a.strip() for a in row["perturbed_answer"])
    ):
        raise DataError(f"{path}:{lineno}: field 'perturbed_answer' must be a non-empty list of strings")
    return this


def numbered_rows(path: str | Path, perturbed: bool | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, row) of one TOFU-format split, every row checked; errors name the file and
    line. `perturbed`: QA rows need wrong answers (default: files named *_perturbed, TOFU's)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    perturbed = path.stem.endswith("_perturbed") if perturbed is None else perturbed
    kind = None
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: malformed JSON ({err.msg})") from None
            kind = _check_row(row, path, lineno, perturbed, kind)
            yield lineno, row


def read_split(path: str | Path, perturbed: bool | None = None) -> list[dict]:
    """Read one TOFU-format split; errors name the file and line."""
    rows = [row for _, row in numbered_rows(path, perturbed)]
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
    forget_eval: list[dict]  # the forget samples (QA: with paraphrased and wrong answers), aligned with `forget`
    retain_eval: list[dict]  # retain samples (QA: with paraphrased and wrong answers)
    utility: dict[str, list[dict]] = field(default_factory=dict)  # real_authors / world_facts (TOFU)
    kind: str = "qa"  # every split of a study is of one kind: 'qa' or 'text'
    files: dict[str, Path] = field(default_factory=dict)  # role -> the file its rows come from
    benchmark: dict = field(default_factory=dict)  # MUSE / WMDP / WHP: {name, sets: {set: rows}}, its own evaluation

    def roles(self) -> dict[str, list[dict]]:
        """Every split a stage may read, by role."""
        return {role: getattr(self, role) for role in ROLES} | self.utility


def _keys(rows: list[dict]) -> set[tuple[str, str]]:
    return {sample_key(r) for r in rows}


MANIFEST = "manifest.json"
ROLES = ("full", "forget", "retain", "holdout", "forget_eval", "retain_eval")
REQUIRED_ROLES = ROLES[1:]  # `full` may be left out: it is then forget + retain
UTILITY_ROLES = ("real_authors", "world_facts")
EVALUATION_ROLES = ("forget_eval", "retain_eval", *UTILITY_ROLES)  # QA rows there need wrong answers


def write_manifest(data_dir: str | Path, *, root: str, splits: dict[str, str], subset: dict | None = None,
                   checksums: dict | None = None, text_prefix_tokens: int = 0, source: str = "synthetic",
                   group_size: int | None = None, benchmark: dict | None = None) -> None:
    """A prepared data folder names where its split files are (`root`, relative to the folder or
    absolute), which file plays which role (`splits`: role -> file name under root), and which
    rows of a split the study uses (`subset`: role -> its first n rows or a list of row positions),
    so real data is read where it is, never copied. `checksums` (sha256 per file) lets a reviewer
    check it is the same data; `text_prefix_tokens`: the unscored context of text rows; `source`:
    data.source, for the report; `group_size`: rows in consecutive groups of this size (TOFU's
    authors) where the files carry no `group` field; `benchmark`: a benchmark's name and the
    files (under the folder) of the sets it is evaluated on."""
    write_json(Path(data_dir) / MANIFEST, {"root": root, "splits": splits, "subset": subset or {}, "source": source,
                                           "sha256": checksums or {}, "text_prefix_tokens": text_prefix_tokens,
                                           "group_size": group_size, **({"benchmark": benchmark} if benchmark else {})})


def _subset(rows: list[dict], spec: int | list[int] | None, what: str) -> list[dict]:
    """The rows a study uses: all (None), the first n (an integer), or those at the listed 0-based
    positions (TOFU's questions chosen per author)."""
    if spec is None:
        return rows
    if isinstance(spec, int):
        if spec > len(rows):
            raise DataError(f"{what} has {len(rows)} rows; the study asks for its first {spec}")
        return rows[:spec]
    outside = [i for i in spec if not 0 <= i < len(rows)]
    if outside:
        raise DataError(f"{what} has {len(rows)} rows; the study asks for row {outside[0] + 1}")
    return [rows[i] for i in spec]


def load_study_data(data_dir: str | Path) -> StudyData:
    data_dir = Path(data_dir)
    if not (data_dir / MANIFEST).is_file():
        raise DataError(f"{data_dir} is not a prepared data folder ({MANIFEST} missing)")
    manifest = read_json(data_dir / MANIFEST)
    root, names, subset = data_dir / manifest["root"], manifest["splits"], manifest.get("subset", {})
    missing = [role for role in REQUIRED_ROLES if role not in names]
    if missing:
        raise DataError(f"{data_dir / MANIFEST}: no file named for the role(s) {missing}")
    files = {role: (root / names[role]).resolve() for role in (*ROLES, *UTILITY_ROLES) if role in names}
    read = {role: read_split(path, perturbed=role in EVALUATION_ROLES) for role, path in files.items()}
    kinds = {role: sample_kind(rows[0]) for role, rows in read.items()}
    if len(set(kinds.values())) > 1:
        raise DataError("rows mixing QA and text: every split of a study is question-answer rows or text rows; "
                        + ", ".join(f"{names[role]} ({role}): {kind}" for role, kind in kinds.items()))
    kind = kinds["forget"]
    if kind == "text" and any(role in read for role in UTILITY_ROLES):
        raise DataError("text data has no utility splits (real_authors, world_facts are TOFU's QA)")
    if "full" not in read:  # derived, TOFU's order: the forget samples last
        read["full"] = read["retain"] + read["forget"]
        names = {**names, "full": f"{names['retain']} + {names['forget']}"}
    data = StudyData(**{role: read[role] for role in ROLES},
                     utility={role: read[role] for role in UTILITY_ROLES if role in read}, kind=kind, files=files)
    if kind == "qa":
        for role in ("forget_eval", "retain_eval"):
            absent = [i + 1 for i, r in enumerate(getattr(data, role)) if "paraphrased_answer" not in r]
            if absent:
                raise DataError(f"{files[role]}:{absent[0]}: missing field(s) ['paraphrased_answer']")

    overlap = _keys(data.forget) & _keys(data.retain)
    if overlap:
        raise DataError(f"{len(overlap)} sample(s) are in both {names['forget']} and {names['retain']}, "
                        f"e.g. {max(next(iter(overlap)), key=len)[:80]!r}")
    leaked = _keys(data.holdout) & _keys(data.full)
    if leaked:
        raise DataError(f"{len(leaked)} holdout sample(s) also appear in {names['full']} (training data), "
                        f"e.g. {max(next(iter(leaked)), key=len)[:80]!r}")
    if _keys(data.forget) | _keys(data.retain) != _keys(data.full):
        raise DataError(f"{names['forget']} + {names['retain']} must together be exactly {names['full']}")
    if [sample_key(r)[0 if kind == "qa" else 1] for r in data.forget_eval] != \
            [sample_key(r)[0 if kind == "qa" else 1] for r in data.forget]:
        what = "questions" if kind == "qa" else "texts"
        raise DataError(f"{names['forget_eval']} is not aligned with {names['forget']} (same {what}, same order)")

    size = manifest.get("group_size")  # TOFU: every author's 20 QA are consecutive rows of every split
    if size:  # (by position in the file, before the study's slice)
        for role, rows in data.roles().items():
            for i, r in enumerate(rows):
                r.setdefault(GROUP, f"{Path(names[role]).stem}/{i // size}")
    # The study's slice: leading rows (whole authors on TOFU) or chosen rows (k questions per
    # author: the same positions in forget, forget_eval and holdout); `full` is then forget + that
    # retain, so a forget author's other questions are in neither fine-tuning set.
    for role in ("forget", "forget_eval", "holdout", "retain", "retain_eval"):
        setattr(data, role, _subset(getattr(data, role), subset.get(role), names[role]))
    data.utility = {role: _subset(rows, subset.get("utility"), names[role]) for role, rows in data.utility.items()}
    kept = _keys(data.forget) | _keys(data.retain)
    data.full = [r for r in data.full if sample_key(r) in kept]
    stray = _keys(data.retain_eval) - _keys(data.retain)
    if stray:
        raise DataError(f"{len(stray)} sample(s) of {names['retain_eval']} are not in the study's "
                        f"{names['retain']} (raise data.tofu.retain_authors or lower data.retain_eval_size)")
    if manifest.get("benchmark"):  # checked against the benchmark's layout when the folder was prepared
        sets = manifest["benchmark"]["sets"]
        data.benchmark = {"name": manifest["benchmark"]["name"],
                          "sets": {name: [json.loads(line) for line in (data_dir / file).read_text(encoding="utf-8")
                                          .splitlines() if line.strip()] for name, file in sets.items()}}
    prefix = int(manifest.get("text_prefix_tokens", 0))
    if kind == "text":
        for rows in data.roles().values():
            for r in rows:
                r[PREFIX] = prefix
    return data


def forget_groups(data: StudyData) -> list[str]:
    """The group of each forget sample: its `group` field, else the sample alone."""
    return [str(r.get(GROUP, f"sample{i}")) for i, r in enumerate(data.forget)]


def located_rows(data: StudyData) -> Iterator[tuple[str, str, dict]]:
    """(role, "file:line", row) for every row the study reads, so that a check made later (with
    the model's tokenizer) can still name where a bad row is. A derived `full` is its parts."""
    for role, rows in data.roles().items():
        if role not in data.files:
            continue
        lines = {}
        for lineno, row in numbered_rows(data.files[role], perturbed=role in EVALUATION_ROLES):
            lines.setdefault(sample_key(row), lineno)
        for r in rows:
            yield role, f"{data.files[role]}:{lines[sample_key(r)]}", r
