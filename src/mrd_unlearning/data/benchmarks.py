"""WMDP, MUSE and Who's Harry Potter in their published layouts. Each split is read from the hub
through `datasets` when online, or offline from a folder in the same layout: one JSON Lines file
per hub config and split, `<folder>/<config>/<split>.jsonl`, with the hub's field names; or, for
MUSE, the layout its official repository shipped, `<corpus>/<subset>/<split>.json`, each file one
JSON array (texts as plain strings). Every row is checked before anything trains on it, and an
error names the file, the line (or item) and the field.

`write_example` writes a small made-up instance of each layout (people and facts that exist
nowhere), which the tests and the CPU-sized configurations read exactly as the real data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import synthetic
from .loader import DataError

MULTIPLE_CHOICE = {"question": str, "choices": list, "answer": int}  # WMDP, MMLU: 4 choices, answer 0-3
TEXT = {"text": str}
CORPUS = {"text": str}  # a corpus's documents: an empty one is kept as published (MUSE-News raw has one); chunking skips it
CONTINUATION = {"prompt": str, "gt": str}  # MUSE verbmem: the gold continuation of the prompt
QA = {"question": str, "answer": str}  # MUSE knowmem
COMPLETION = {"prompt": str, "response": str}  # WHP, as SOUL and others evaluate it

# benchmark -> hub dataset (None: local files only) and config -> split -> fields
BENCHMARKS: dict[str, dict] = {
    "wmdp": {"hub": "cais/wmdp",
             "configs": {c: {"test": MULTIPLE_CHOICE} for c in ("wmdp-bio", "wmdp-chem", "wmdp-cyber")}},
    # the bio forget corpus is gated: it comes as a local file in the same layout
    "wmdp_corpora": {"hub": "cais/wmdp-corpora",
                     "configs": {c: {"train": CORPUS} for c in ("bio-forget-corpus", "cyber-forget-corpus",
                                                               "cyber-retain-corpus", "bio-retain-corpus")}},
    **{f"muse_{domain.lower()}": {
        "hub": f"muse-bench/MUSE-{domain}",
        "configs": {"raw": {s: CORPUS for s in ("forget", "retain1", "retain2", "holdout")},
                    "verbmem": {"forget": CONTINUATION},
                    "knowmem": {s: QA for s in ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl")},
                    "privleak": {s: TEXT for s in ("forget", "retain", "holdout")}}}
       for domain in ("News", "Books")},
    "whp": {"hub": None, "configs": {"completions": {"forget": COMPLETION}}},
}


def _spec(benchmark: str, config: str, split: str) -> dict:
    if benchmark not in BENCHMARKS:
        raise DataError(f"unknown benchmark {benchmark!r}; allowed: {sorted(BENCHMARKS)}")
    configs = BENCHMARKS[benchmark]["configs"]
    if config not in configs:
        raise DataError(f"{benchmark} has no config {config!r}; allowed: {sorted(configs)}")
    if split not in configs[config]:
        raise DataError(f"{benchmark} {config} has no split {split!r}; allowed: {sorted(configs[config])}")
    return configs[config][split]


def _check(row, fields: dict, where: str) -> dict:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in fields if k not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}")
    for key, kind in fields.items():
        value = row[key]
        if kind is str and not isinstance(value, str):
            raise DataError(f"{where}: field '{key}' must be a string")
        if kind is str and not value.strip() and fields is not CORPUS:
            raise DataError(f"{where}: field '{key}' must be a non-empty string")
        if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise DataError(f"{where}: field '{key}' must be an integer")
    if fields is MULTIPLE_CHOICE:
        choices = row["choices"]
        if len(choices) != 4 or not all(isinstance(c, str) and c.strip() for c in choices):
            raise DataError(f"{where}: field 'choices' must be a list of 4 non-empty strings")
        if not 0 <= row["answer"] < 4:
            raise DataError(f"{where}: field 'answer' must be 0-3 (the index of the right choice), got {row['answer']}")
    return row


def split_file(folder: str | Path, config: str, split: str) -> Path:
    return Path(folder) / config / f"{split}.jsonl"


def read_benchmark(benchmark: str, config: str, split: str, folder: str | Path | None = None) -> list[dict]:
    """The rows of one split, checked: from `folder` (the hub's layout, see the module) or, with
    no folder, from the hub (online; `datasets` caches it)."""
    fields = _spec(benchmark, config, split)
    if folder is None:
        hub = BENCHMARKS[benchmark]["hub"]
        if hub is None:
            raise DataError(f"{benchmark} is not on the hub: give the folder that holds {config}/{split}.jsonl")
        from datasets import load_dataset  # only when online: the local route never imports it

        rows = list(load_dataset(hub, config, split=split))
        return [_check(row, fields, f"{hub} {config}/{split} row {i}") for i, row in enumerate(rows)]
    path = split_file(folder, config, split)
    array = path.with_suffix(".json")
    if not path.is_file() and array.is_file() and benchmark.startswith("muse_"):
        return _array_rows(array, fields)
    if not path.is_file():
        also = f", or MUSE's repository layout {config}/{split}.json" if benchmark.startswith("muse_") else ""
        raise DataError(f"{path}: no such file (a {benchmark} folder holds <config>/<split>.jsonl files{also}: "
                        f"{', '.join(f'{c}/{s}.jsonl' for c, splits in BENCHMARKS[benchmark]['configs'].items() for s in splits)})")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
        rows.append(_check(row, fields, f"{path}:{lineno}"))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _array_rows(path: Path, fields: dict) -> list[dict]:
    """A split in MUSE's repository layout: one JSON array, texts as strings, other rows objects."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(items, list) or not items:
        raise DataError(f"{path}: expected a non-empty JSON array (MUSE's repository layout)")
    text = fields is TEXT or fields is CORPUS
    return [_check({"text": item} if text and isinstance(item, str) else item, fields, f"{path} item {i}")
            for i, item in enumerate(items)]


# --- a small made-up instance of each layout ------------------------------------------------------

def _people(n_people: int, seed: int) -> tuple[list[tuple[str, dict[str, str], list[str]]], dict[str, list[str]]]:
    """Made-up people, each a name, their facts and a document of one sentence per fact; and the
    values each fact takes."""
    rng = np.random.default_rng(seed)
    names = synthetic._unique_names(rng, n_people)
    pools = {a.name: synthetic._value_pool(rng, a, max(4, n_people)) for a in synthetic.ATTRIBUTES}
    people = []
    for name in names:
        facts = {a.name: str(rng.choice(pools[a.name])) for a in synthetic.ATTRIBUTES}
        sentences = [a.answer.format(name=name, value=facts[a.name]) for a in synthetic.ATTRIBUTES]
        people.append((name, facts, sentences))
    return people, pools


def _write(folder: Path, config: str, split: str, rows: list[dict], array: bool = False) -> None:
    path = split_file(folder, config, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array:  # MUSE's repository layout: <config>/<split>.json, one array, texts as plain strings
        items = [r["text"] if set(r) == {"text"} else r for r in rows]
        path.with_suffix(".json").write_text(json.dumps(items, indent=2))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_example(benchmark: str, folder: str | Path, *, n_people: int = 12, seed: int = 0,
                  repository_layout: bool = False) -> Path:
    """Every split of `benchmark` in its layout, about made-up people: a third are forgotten, a
    third retained, a third held out. Questions ask for a forget person's facts (WMDP: the right
    value among 4 of the same kind); documents are a person's facts as sentences.
    `repository_layout` (MUSE): JSON arrays as MUSE's repository shipped them, texts as strings."""
    if benchmark not in BENCHMARKS:
        raise DataError(f"unknown benchmark {benchmark!r}; allowed: {sorted(BENCHMARKS)}")
    if n_people < 6:
        raise DataError(f"a made-up {benchmark} needs at least 6 people (2 per role), got {n_people}")
    folder = Path(folder)
    people, pools = _people(n_people, seed)
    rng = np.random.default_rng(seed + 1)
    third = n_people // 3
    forget, retain, holdout = people[:third], people[third:2 * third], people[2 * third:]
    def documents(group):
        return [{"text": " ".join(sentences)} for _, _, sentences in group]

    def questions(group):
        rows = []
        for name, facts, _ in group:
            for a in synthetic.ATTRIBUTES[:4]:
                wrong = [v for v in pools[a.name] if v != facts[a.name]]
                choices = [str(v) for v in rng.choice(wrong, size=3, replace=False)]
                answer = int(rng.integers(4))
                choices.insert(answer, facts[a.name])
                rows.append({"question": a.question.format(name=name), "choices": choices, "answer": answer})
        return rows

    def split_sentences(group, first, second):
        rows = []
        for _, _, sentences in group:
            for s in sentences:
                words = s.split()
                cut = max(1, len(words) // 2)
                rows.append({first: " ".join(words[:cut]), second: " ".join(words[cut:])})
        return rows

    def qa(group):
        return [{"question": a.question.format(name=name), "answer": facts[a.name]}
                for name, facts, _ in group for a in synthetic.ATTRIBUTES[:5]]

    if benchmark == "wmdp":
        for config in BENCHMARKS["wmdp"]["configs"]:
            _write(folder, config, "test", questions(forget))
    elif benchmark == "wmdp_corpora":
        for config in BENCHMARKS["wmdp_corpora"]["configs"]:
            _write(folder, config, "train", documents(forget if "forget" in config else retain))
    elif benchmark.startswith("muse_"):
        half, array = len(retain) // 2, repository_layout  # every MUSE split in the one layout
        for split, group in (("forget", forget), ("retain1", retain[:half]), ("retain2", retain[half:]),
                             ("holdout", holdout)):
            _write(folder, "raw", split, documents(group), array)
        _write(folder, "verbmem", "forget", split_sentences(forget, "prompt", "gt"), array)
        _write(folder, "knowmem", "forget_qa", qa(forget), array)
        _write(folder, "knowmem", "retain_qa", qa(retain), array)
        _write(folder, "knowmem", "forget_qa_icl", qa(holdout[:1]), array)
        _write(folder, "knowmem", "retain_qa_icl", qa(holdout[1:2]), array)
        for split, group in (("forget", forget), ("retain", retain), ("holdout", holdout)):
            _write(folder, "privleak", split, documents(group), array)
    else:  # whp
        _write(folder, "completions", "forget", split_sentences(forget, "prompt", "response"))
    return folder
