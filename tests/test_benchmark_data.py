"""WMDP, MUSE and WHP in their published layouts, offline: a made-up instance of each is read back
field by field, its questions and continuations come from its own forget documents, and a broken
folder is rejected with the file, line and field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrd_unlearning.data.benchmarks import BENCHMARKS, read_benchmark, split_file, write_example
from mrd_unlearning.data.loader import DataError


@pytest.mark.parametrize("benchmark", sorted(BENCHMARKS))
def test_a_made_up_instance_reads_back_in_the_hub_layout(benchmark, tmp_path):
    folder = write_example(benchmark, tmp_path / benchmark, n_people=9, seed=1)
    for config, splits in BENCHMARKS[benchmark]["configs"].items():
        for split, fields in splits.items():
            rows = read_benchmark(benchmark, config, split, folder)
            assert rows and all(set(r) == set(fields) for r in rows), (config, split)


def test_questions_and_continuations_come_from_the_forget_documents(tmp_path):
    muse = write_example("muse_news", tmp_path / "muse", seed=2)
    forget = " ".join(r["text"] for r in read_benchmark("muse_news", "raw", "forget", muse))
    holdout = " ".join(r["text"] for r in read_benchmark("muse_news", "raw", "holdout", muse))
    assert all(f"{r['prompt']} {r['gt']}" in forget for r in read_benchmark("muse_news", "verbmem", "forget", muse))
    assert all(r["answer"] in forget for r in read_benchmark("muse_news", "knowmem", "forget_qa", muse))
    assert all(r["text"] in holdout for r in read_benchmark("muse_news", "privleak", "holdout", muse))
    wmdp = write_example("wmdp", tmp_path / "wmdp", seed=2)
    corpora = write_example("wmdp_corpora", tmp_path / "corpora", seed=2)
    bio = " ".join(r["text"] for r in read_benchmark("wmdp_corpora", "bio-forget-corpus", "train", corpora))
    questions = read_benchmark("wmdp", "wmdp-bio", "test", wmdp)
    assert all(q["choices"][q["answer"]] in bio for q in questions)
    assert len({q["answer"] for q in questions}) > 1  # the right choice is not always in one place


def test_a_broken_folder_is_named_by_file_line_and_field(tmp_path):
    folder = write_example("wmdp", tmp_path / "wmdp")
    path = split_file(folder, "wmdp-chem", "test")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for broken, message in ((dict(rows[1], choices=rows[1]["choices"][:3]), "field 'choices' must be a list of 4"),
                            ({k: v for k, v in rows[1].items() if k != "answer"}, r"missing field\(s\) \['answer'\]"),
                            (dict(rows[1], answer=4), "field 'answer' must be 0-3")):
        path.write_text("".join(json.dumps(r) + "\n" for r in [rows[0], broken]))
        with pytest.raises(DataError, match=rf"wmdp-chem/test\.jsonl:2: {message}"):
            read_benchmark("wmdp", "wmdp-chem", "test", folder)
    path.unlink()
    with pytest.raises(DataError, match=r"wmdp-chem/test\.jsonl: no such file .*wmdp-bio/test\.jsonl"):
        read_benchmark("wmdp", "wmdp-chem", "test", folder)
    with pytest.raises(DataError, match=r"no config 'wmdp-phys'; allowed: \['wmdp-bio'"):
        read_benchmark("wmdp", "wmdp-phys", "test", folder)
    with pytest.raises(DataError, match="not on the hub"):
        read_benchmark("whp", "soul", "hp_test_qa_100")


MUSE = next((p for p in [Path(__file__).resolve().parents[2] / "shared/data/muse", Path("/work/shared/data/muse")]
             if (p / "news" / "knowmem").is_dir()), None)


@pytest.mark.parametrize("benchmark", ["muse_news", "muse_books"])
def test_muse_reads_the_same_rows_from_its_repository_layout(benchmark, tmp_path):
    """MUSE's official repository shipped <subset>/<split>.json arrays (texts as strings): the same
    made-up instance reads back row for row as from the hub layout."""
    hub = write_example(benchmark, tmp_path / "hub", n_people=9, seed=3)
    repository = write_example(benchmark, tmp_path / "repository", n_people=9, seed=3, repository_layout=True)
    assert not list(repository.rglob("*.jsonl"))
    for config, splits in BENCHMARKS[benchmark]["configs"].items():
        for split in splits:
            assert read_benchmark(benchmark, config, split, repository) == read_benchmark(benchmark, config, split, hub)
    path = repository / "privleak" / "holdout.json"
    path.write_text(json.dumps(["a text", 7]))
    with pytest.raises(DataError, match=r"privleak/holdout\.json item 1: expected a JSON object"):
        read_benchmark(benchmark, "privleak", "holdout", repository)


@pytest.mark.skipif(MUSE is None, reason="MUSE's local copy not found")
def test_the_real_muse_data_reads_where_it_is_with_its_published_counts():
    news, books = MUSE / "news", MUSE / "books"
    assert len(read_benchmark("muse_news", "raw", "forget", news)) == 889
    verbmem = read_benchmark("muse_news", "verbmem", "forget", news)
    assert len(verbmem) == 100 and all(r["prompt"] and r["gt"] for r in verbmem)
    for split, n in (("forget_qa", 100), ("retain_qa", 100), ("forget_qa_icl", 10), ("retain_qa_icl", 10)):
        assert len(read_benchmark("muse_news", "knowmem", split, news)) == n, split
    for split in ("forget", "retain", "holdout"):
        assert len(read_benchmark("muse_books", "privleak", split, books)) == 100, split
    assert [len(read_benchmark("muse_books", "raw", s, books)) for s in ("forget", "holdout", "retain1", "retain2")] \
        == [4, 3, 12, 13]
    with pytest.raises(DataError, match=r"raw/retain1\.jsonl: no such file .*or MUSE's repository layout"):
        read_benchmark("muse_news", "raw", "retain1", news)  # absent from the local copy (over 4 MiB)
