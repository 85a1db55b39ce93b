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
import re
from pathlib import Path

import numpy as np

from . import synthetic
from .loader import CUT, GROUP, DataError
from .loader import TEXT as TEXT_FIELD

MULTIPLE_CHOICE = {"question": str, "choices": list, "answer": int}  # WMDP, MMLU: 4 choices, answer 0-3
TEXT = {"text": str}
CORPUS = {"text": str}  # a corpus's documents: an empty one is kept as published (MUSE-News raw has one); chunking skips it
CONTINUATION = {"prompt": str, "gt": str}  # MUSE verbmem: the gold continuation of the prompt
QA = {"question": str, "answer": str}  # MUSE knowmem
COMPLETION = {"prompt": str, "response": str}  # WHP, as SOUL evaluates it: an instruction + a passage's first k words
TRIVIA = {"question": str, "true_answer": str, "false_answer": str}  # WHP trivia: a 2-way choice

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
    # Harry Potter: no hub dataset; the files as SOUL (files/data/hp/) and the tasks library of
    # Lynch et al. (hp/data/) publish them, under a folder each (`layout`)
    "whp": {"hub": None,
            "configs": {"soul": {f"hp_{side}_qa_{k}": COMPLETION for side in ("train", "test") for k in (50, 100, 200, 300)},
                        "trivia": {s: TRIVIA for s in ("hp_trivia_train", "hp_trivia_test")}},
            "layout": {"soul": "soul/files/data/hp/{split}.jsonl", "trivia": "tasks/hp/data/{split}.jsonl"}},
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


def split_file(folder: str | Path, config: str, split: str, benchmark: str | None = None) -> Path:
    """Where a split lies in a local folder: `<config>/<split>.jsonl`, or the benchmark's own layout."""
    layout = BENCHMARKS.get(benchmark, {}).get("layout", {}).get(config, "{config}/{split}.jsonl")
    return Path(folder) / layout.format(config=config, split=split)


def source_file(folder: str | Path, config: str, split: str, benchmark: str) -> Path:
    """The file a split is read from: its JSON Lines file, or MUSE's repository-layout array."""
    path = split_file(folder, config, split, benchmark)
    return path.with_suffix(".json") if not path.is_file() and path.with_suffix(".json").is_file() else path


def read_benchmark(benchmark: str, config: str, split: str, folder: str | Path | None = None) -> list[dict]:
    """The rows of one split, checked: from `folder` (the hub's layout, see the module) or, with
    no folder, from the hub (online; `datasets` caches it)."""
    fields = _spec(benchmark, config, split)
    if folder is None:
        hub = BENCHMARKS[benchmark]["hub"]
        if hub is None:
            raise DataError(f"{benchmark} is not on the hub: give the folder that holds {config}/{split}.jsonl")
        from datasets import load_dataset  # only when online: the local route never imports it

        try:
            rows = list(load_dataset(hub, config, split=split))
        except Exception as err:  # offline, gated, renamed: one line naming both routes
            raise DataError(f"could not fetch {hub} {config}/{split} from the hub ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}); offline, give a local folder in "
                            f"its layout in data.benchmark.paths (config/local_benchmarks.yaml)") from None
        return [_check(row, fields, f"{hub} {config}/{split} row {i}") for i, row in enumerate(rows)]
    path = split_file(folder, config, split, benchmark)
    array = path.with_suffix(".json")
    if not path.is_file() and array.is_file() and benchmark.startswith("muse_"):
        return _array_rows(array, fields)
    if not path.is_file():
        also = f", or MUSE's repository layout {config}/{split}.json" if benchmark.startswith("muse_") else ""
        raise DataError(f"{path}: no such file (a {benchmark} folder holds <config>/<split>.jsonl files{also}: "
                        f"{', '.join(str(split_file('', c, s, benchmark)) for c, splits in BENCHMARKS[benchmark]['configs'].items() for s in splits)})")
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


def _write(folder: Path, config: str, split: str, rows: list[dict], array: bool = False,
           benchmark: str | None = None) -> None:
    path = split_file(folder, config, split, benchmark)
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

    if benchmark == "wmdp":  # bio about the forget people (whose documents are the bio corpus), the others apart
        for config, group in zip(BENCHMARKS["wmdp"]["configs"], (forget, retain, holdout)):
            _write(folder, config, "test", questions(group))
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
    else:  # whp: completions of the forget people's documents, trivia about them
        for split in BENCHMARKS["whp"]["configs"]["soul"]:
            _write(folder, "soul", split, split_sentences(forget, "prompt", "response"), benchmark="whp")
        trivia = [{"question": a.question.format(name=name), "true_answer": facts[a.name],
                   "false_answer": next(str(v) for v in pools[a.name] if v != facts[a.name])}
                  for name, facts, _ in forget for a in synthetic.ATTRIBUTES[:4]]
        for split in BENCHMARKS["whp"]["configs"]["trivia"]:
            _write(folder, "trivia", split, trivia, benchmark="whp")
    return folder


# --- a benchmark as a study -------------------------------------------------------------------------
# The published sets each benchmark is evaluated on beside the study's own metrics (set -> config,
# split); WMDP's are the study's own questions (taught, held out, retained), built with the study.
EVALUATION_SETS: dict[str, dict[str, tuple[str, str]]] = {
    **{muse: {"verbmem": ("verbmem", "forget"), "knowmem_forget": ("knowmem", "forget_qa"),
              "knowmem_forget_icl": ("knowmem", "forget_qa_icl"), "knowmem_retain": ("knowmem", "retain_qa"),
              "knowmem_retain_icl": ("knowmem", "retain_qa_icl")} for muse in ("muse_news", "muse_books")},
    "wmdp": {},
    "whp": {"soul_100": ("soul", "hp_test_qa_100"), "soul_300": ("soul", "hp_test_qa_300"),
            "trivia": ("trivia", "hp_trivia_test")},
}
# What each benchmark's own evaluation reports (summary key -> what it is, on its scale), and what
# of the benchmark's evaluation a study here does not run
_MUSE_METRICS = {"verbmem_f": "VerbMem on forget (ROUGE-L F1 x 100)", "knowmem_forget_f": "KnowMem on forget (x 100)",
                 "knowmem_retain_f": "KnowMem on retain (x 100)", "privleak": "PrivLeak (%)"}
METRICS: dict[str, dict[str, str]] = {
    "muse_news": _MUSE_METRICS, "muse_books": _MUSE_METRICS,
    "wmdp": {"wmdp_forget_acc": "accuracy, forgotten questions", "wmdp_holdout_acc": "accuracy, held-out questions",
             "wmdp_retain_acc": "accuracy, retained questions", "wmdp_bio_acc": "WMDP-Bio accuracy",
             "wmdp_chem_acc": "WMDP-Chem accuracy"},
    "whp": {"soul_100_rouge": "SOUL k=100 ROUGE-L recall (x 100)", "soul_100_bleu": "SOUL k=100 BLEU",
            "soul_300_rouge": "SOUL k=300 ROUGE-L recall (x 100)", "soul_300_bleu": "SOUL k=300 BLEU",
            "trivia_acc": "trivia accuracy"},
}
METRIC_KEYS = tuple(dict.fromkeys(k for metrics in METRICS.values() for k in metrics))
_TEXT = ("Text has no paraphrased or wrong answers, so there is no truth ratio and no forget quality: C4 reads "
         "completeness as the forget pieces' verbatim-continuation ROUGE-L.")
LACKS = {  # whole sentences, for the report
    "muse_news": f"MUSE's scalability and sustainability splits are not run. {_TEXT}",
    "muse_books": f"MUSE's scalability and sustainability splits are not run. {_TEXT}",
    "wmdp": ("MMLU, WMDP's utility measure, is not run: it is not in the local data (online, lm-evaluation-harness "
             "scores it as `mmlu`); utility here is the retained Chem questions and the retain split's metrics. "
             "WMDP's forget corpora are not used: the forget set is the questions themselves."),
    "whp": f"The familiarity score of Eldan and Russinovich (generations judged by GPT-4) is not run. {_TEXT}",
}
UNTRUNCATED = ("knowmem_forget_icl", "knowmem_retain_icl")  # the few-shot examples: always all of them
STUDY_ROLES = ("forget", "retain", "holdout")


def parse_split(spec: str, key: str) -> tuple[str, str, str]:
    """'benchmark:config/split' -> its three parts, or a one-line error naming the config key."""
    benchmark, _, rest = spec.partition(":")
    config, _, split = rest.partition("/")
    if not (benchmark and config and split):
        raise DataError(f"config key '{key}': {spec!r} is not 'benchmark:config/split' (e.g. muse_news:raw/forget)")
    _spec(benchmark, config, split)
    return benchmark, config, split


def _join(prompt: str, continuation: str) -> str:
    """A continuation after its prompt, as one text (one space between, unless one is there)."""
    return prompt + continuation if prompt[-1:].isspace() or continuation[:1].isspace() else f"{prompt} {continuation}"


def _word_spans(text: str, words: int) -> list[str]:
    """The text cut every `words` words, each piece keeping the text's own spacing."""
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    return [text[starts[i]:(starts[i + words] if i + words < len(starts) else len(text))].rstrip()
            for i in range(0, len(starts), words)]


def _spread(n_items: int, n: int | None) -> list[int]:
    """n positions spread evenly over n_items (all of them when n is None or larger)."""
    if n is None or n >= n_items:
        return list(range(n_items))
    return sorted({int(round(x)) for x in np.linspace(0, n_items - 1, n)})


def _passages(rows: list[dict], fields: dict, label: str, words: int | None, n: int | None
              ) -> list[tuple[str, str, bool]]:
    """(group, text, whether it ends its document) of the documents a role uses: a continuation
    row (MUSE's verbmem, an excerpt) gives one, its end (the gold continuation and the prompt's
    last words, `words` in all); a corpus's documents are cut into consecutive passages of `words`
    words, n of them spread evenly over the corpus; without `words` the first n documents whole."""
    if fields is CONTINUATION:
        texts = [(f"{label}#{i}", _join(r["prompt"], r["gt"])) for i, r in enumerate(rows)][:n]
        return [(g, " ".join(t.split()[-words:]) if words else t, False) for g, t in texts]
    docs = [(f"{label}#{i}", r["text"]) for i, r in enumerate(rows) if r["text"].strip()]
    if not words:
        return [(g, t, True) for g, t in docs[:n]]
    pieces = [(f"{g}.{j}", p, j == len(spans) - 1) for g, t in docs
              for spans in [_word_spans(t, words)] for j, p in enumerate(spans)]
    return [pieces[i] for i in _spread(len(pieces), n)]


def _qa_row(row: dict, group: str) -> dict:
    """A multiple-choice question as a study's QA row: the right choice is the answer (and its own
    paraphrase: none is published), the other three the wrong answers of the truth ratio."""
    right = row["choices"][row["answer"]]
    return {"question": row["question"].strip(), "answer": right, "paraphrased_answer": right,
            "perturbed_answer": [c for i, c in enumerate(row["choices"]) if i != row["answer"]], GROUP: group}


def benchmark_study(cfg: dict, read=None) -> tuple[dict[str, list[dict]], dict[str, list[dict]], dict[str, str]]:
    """A study's forget, retain and holdout rows built from a benchmark's published splits
    (data.benchmark), its evaluation sets, and the source file of each split read. Text documents
    become samples of `chunk_words` words each (a piece cut before its document's end carries
    `_cut`: no EOS follows it), grouped by document; multiple-choice questions become QA rows. Two
    roles reading one split take disjoint rows, in the order forget, retain, holdout."""
    read = read or (lambda b, c, s: read_benchmark(b, c, s, cfg["paths"].get(b)))
    used: dict[tuple, int] = {}
    roles: dict[str, list[dict]] = {}
    sources: dict[str, str] = {}
    mc_sets: dict[str, list[dict]] = {}
    for role in STUDY_ROLES:
        benchmark, config, split = parse_split(cfg["splits"][role], f"data.benchmark.splits.{role}")
        fields = _spec(benchmark, config, split)
        start = used.get((benchmark, config, split), 0)
        rows = read(benchmark, config, split)[start:]
        n = cfg["documents"][role]
        label = f"{config}/{split}"
        if fields is MULTIPLE_CHOICE:
            chosen = rows[:n]
            used[(benchmark, config, split)] = start + len(chosen)
            roles[role] = [_qa_row(r, f"{label}#{start + i}") for i, r in enumerate(chosen)]
            mc_sets[role] = chosen
        elif fields in (CORPUS, TEXT, CONTINUATION):
            passages = _passages(rows, fields, label, cfg["document_words"], n)
            used[(benchmark, config, split)] = start + len(rows)
            roles[role] = [{TEXT_FIELD: text, GROUP: group, CUT: i < len(pieces) - 1 or not ends}
                           for group, passage, ends in passages
                           for pieces in [_word_spans(passage, cfg["chunk_words"]) if cfg["chunk_words"] else [passage]]
                           for i, text in enumerate(pieces)]
        else:
            raise DataError(f"config key 'data.benchmark.splits.{role}': {cfg['splits'][role]} holds "
                            f"{sorted(fields)} rows; a study's {role} set is corpus text, continuations or "
                            f"multiple-choice questions")
        if not roles[role]:
            raise DataError(f"config key 'data.benchmark.splits.{role}': {cfg['splits'][role]} gives no rows"
                            + (f" after the {start} that an earlier role took" if start else ""))
        sources[cfg["splits"][role]] = _source(cfg, benchmark, config, split)
    kinds = {role: "qa" if "question" in rows[0] else "text" for role, rows in roles.items()}
    if len(set(kinds.values())) > 1:
        raise DataError(f"config key 'data.benchmark.splits': the roles mix questions and text ({kinds}); "
                        f"a study is all one or the other")
    sets = {}
    for name, (config, split) in EVALUATION_SETS[cfg["name"]].items():
        rows = read(cfg["name"], config, split)
        sets[name] = rows if name in UNTRUNCATED else rows[:cfg["eval_rows"]]
        sources[f"{cfg['name']}:{config}/{split}"] = _source(cfg, cfg["name"], config, split)
    if cfg["name"] == "wmdp" and set(mc_sets) == set(STUDY_ROLES):  # the questions taught: forgotten, held out, kept
        sets |= {"wmdp_forget": mc_sets["forget"], "wmdp_holdout": mc_sets["holdout"],
                 "wmdp_retain": mc_sets["retain"][:cfg["eval_rows"]]}
    elif cfg["name"] == "wmdp":  # a study on the corpora: WMDP's own accuracy on its published questions
        for subset in ("bio", "chem"):
            sets[f"wmdp_{subset}"] = read("wmdp", f"wmdp-{subset}", "test")[:cfg["eval_rows"]]
            sources[f"wmdp:wmdp-{subset}/test"] = _source(cfg, "wmdp", f"wmdp-{subset}", "test")
    return roles, sets, sources


def _source(cfg: dict, benchmark: str, config: str, split: str) -> str:
    folder = cfg["paths"].get(benchmark)
    return str(source_file(folder, config, split, benchmark).resolve()) if folder else f"hub {BENCHMARKS[benchmark]['hub']}"
