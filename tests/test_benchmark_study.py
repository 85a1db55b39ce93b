"""MUSE, WMDP and WHP as studies: samples cut from made-up instances of the published layouts, the
data folder the workflow trains on, each benchmark's own evaluation on a tiny model, and the
metrics it adds checked by hand."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mrd_unlearning import evaluation, metrics
from mrd_unlearning.config import ConfigError, validate_config
from mrd_unlearning.data import benchmarks
from mrd_unlearning.data.benchmarks import benchmark_study, read_benchmark, write_example
from mrd_unlearning.data.loader import CUT, GROUP, DataError, load_study_data
from mrd_unlearning.models import encode_sample
from mrd_unlearning.stages.data import prepare_data

from .conftest import MAX_LENGTH, ROOT, tiny_model


def _cfg(name, folders, splits, documents=(4, 4, 4), document_words=None, chunk_words=None, eval_rows=3):
    return {"name": name, "paths": folders, "splits": dict(zip(("forget", "retain", "holdout"), splits)),
            "documents": dict(zip(("forget", "retain", "holdout"), documents)), "document_words": document_words,
            "chunk_words": chunk_words, "eval_rows": eval_rows}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    return {"muse_news": write_example("muse_news", root / "muse", n_people=12, seed=4, repository_layout=True),
            "muse_books": write_example("muse_books", root / "books", n_people=12, seed=5),
            "wmdp": write_example("wmdp", root / "wmdp", n_people=12, seed=6),
            "whp": write_example("whp", root / "whp", n_people=12, seed=7)}


MUSE = ("muse_news:verbmem/forget", "muse_news:privleak/retain", "muse_news:privleak/holdout")


def test_text_samples_are_word_pieces_that_rebuild_their_passages(folders, tokenizer):
    cfg = _cfg("muse_news", {"muse_news": folders["muse_news"]}, MUSE, documents=(3, 2, 2), document_words=12,
               chunk_words=5)
    roles, sets, sources = benchmark_study(cfg)
    verbmem = read_benchmark("muse_news", "verbmem", "forget", folders["muse_news"])
    forget = roles["forget"]
    assert {r[GROUP] for r in forget} == {f"verbmem/forget#{i}" for i in range(3)}
    for i in range(3):  # a continuation gives one passage: its last 12 words, the gold continuation at its end
        pieces = [r for r in forget if r[GROUP] == f"verbmem/forget#{i}"]
        assert all(len(p["text"].split()) <= 5 for p in pieces)
        words = f"{verbmem[i]['prompt']} {verbmem[i]['gt']}".split()[-12:]
        assert " ".join(p["text"] for p in pieces).split() == words
        assert all(p[CUT] for p in pieces)  # an excerpt never ends its document: no EOS anywhere
    # corpus passages spread over the documents; only a document's last piece goes without `_cut`
    retain = roles["retain"]
    docs = [r["text"] for r in read_benchmark("muse_news", "privleak", "retain", folders["muse_news"])]
    for group in dict.fromkeys(r[GROUP] for r in retain):
        doc, passage = map(int, re.fullmatch(r"privleak/retain#(\d+)\.(\d+)", group).groups())
        pieces = [r for r in retain if r[GROUP] == group]
        doc_words = docs[doc].split()
        assert " ".join(p["text"] for p in pieces).split() == doc_words[12 * passage:12 * (passage + 1)]
        ends = 12 * (passage + 1) >= len(doc_words)
        assert [p[CUT] for p in pieces] == [True] * (len(pieces) - 1) + [not ends]
    assert len({r[GROUP] for r in retain}) == 2
    for piece in forget + retain:  # EOS only where a document ends: no piece claims an end its document lacks
        ids = tokenizer.encode(piece["text"], add_special_tokens=False)
        encoded = encode_sample(tokenizer, piece, 64).input_ids
        assert encoded == [tokenizer.bos_token_id, *ids] + ([] if piece[CUT] else [tokenizer.eos_token_id])
    assert any(not piece[CUT] for piece in retain)  # both kinds met
    # the evaluation sets: the first eval_rows rows, the few-shot examples all
    assert sets["verbmem"] == verbmem[:3]
    assert len(sets["knowmem_forget_icl"]) == len(read_benchmark("muse_news", "knowmem", "forget_qa_icl",
                                                                 folders["muse_news"]))
    assert sources["muse_news:verbmem/forget"].endswith("verbmem/forget.json")  # MUSE's repository layout


def test_multiple_choice_questions_become_qa_rows_and_roles_on_one_split_are_disjoint(folders):
    cfg = _cfg("wmdp", {"wmdp": folders["wmdp"]}, ("wmdp:wmdp-bio/test", "wmdp:wmdp-chem/test", "wmdp:wmdp-bio/test"),
               documents=(5, 4, 6), eval_rows=2)
    roles, sets, _ = benchmark_study(cfg)
    bio = read_benchmark("wmdp", "wmdp-bio", "test", folders["wmdp"])
    assert [r["question"] for r in roles["forget"]] == [q["question"] for q in bio[:5]]
    assert [r["question"] for r in roles["holdout"]] == [q["question"] for q in bio[5:11]]  # after forget's rows
    for row, q in zip(roles["forget"], bio):
        assert row["answer"] == row["paraphrased_answer"] == q["choices"][q["answer"]]
        assert sorted(row["perturbed_answer"] + [row["answer"]]) == sorted(q["choices"])
    assert sets["wmdp_forget"] == bio[:5] and sets["wmdp_holdout"] == bio[5:11] and len(sets["wmdp_retain"]) == 2
    # on WMDP's corpora (the gated bio corpus as a local file, online the others): accuracy on the published questions
    corpora = write_example("wmdp_corpora", folders["wmdp"].parent / "corpora", n_people=12, seed=6)
    cfg = _cfg("wmdp", {"wmdp": folders["wmdp"], "wmdp_corpora": corpora},
               ("wmdp_corpora:bio-forget-corpus/train", "wmdp_corpora:bio-retain-corpus/train",
                "wmdp_corpora:cyber-retain-corpus/train"), eval_rows=3)
    roles, sets, sources = benchmark_study(cfg)
    assert "text" in roles["forget"][0] and set(sets) == {"wmdp_bio", "wmdp_chem"}
    assert sets["wmdp_chem"] == read_benchmark("wmdp", "wmdp-chem", "test", folders["wmdp"])[:3]
    assert "wmdp:wmdp-bio/test" in sources


def test_a_bad_benchmark_configuration_is_one_line_naming_its_key(folders):
    base = {"name": "t", "data": {"source": "benchmark", "retain_eval_size": 4,
                     "benchmark": _cfg("whp", {"muse_books": str(folders["muse_books"])},
                                       ("muse_books:raw/forget", "muse_books:raw/retain1", "muse_books:raw/holdout"))}}
    with pytest.raises(ConfigError, match=r"config key 'data.benchmark.paths': \['whp'\] is not on the hub"):
        validate_config(base)
    bad = json.loads(json.dumps(base))
    bad["data"]["benchmark"]["splits"]["forget"] = "muse_books/raw/forget"
    with pytest.raises(ConfigError, match=r"config key 'data.benchmark.splits.forget': 'muse_books/raw/forget' is not"):
        validate_config(bad)
    bad["data"]["benchmark"]["splits"]["forget"] = "muse_books:raw/forget2"
    with pytest.raises(ConfigError, match=r"muse_books raw has no split 'forget2'"):
        validate_config(bad)
    mixed = _cfg("wmdp", {"wmdp": folders["wmdp"], "muse_news": folders["muse_news"]},
                 ("wmdp:wmdp-bio/test", "muse_news:privleak/retain", "wmdp:wmdp-bio/test"))
    with pytest.raises(DataError, match="the roles mix questions and text"):
        benchmark_study(mixed)
    too_few = _cfg("wmdp", {"wmdp": folders["wmdp"]}, ("wmdp:wmdp-bio/test", "wmdp:wmdp-chem/test", "wmdp:wmdp-bio/test"),
                   documents=(1000, 4, 4))
    with pytest.raises(DataError, match="gives no rows after the .* that an earlier role took"):
        benchmark_study(too_few)


SPECS = {"muse_news": (MUSE, (3, 3, 3), 12, 6),
         "wmdp": (("wmdp:wmdp-bio/test", "wmdp:wmdp-chem/test", "wmdp:wmdp-bio/test"), (5, 8, 5), None, None),
         "whp": (("muse_books:raw/forget", "muse_books:raw/retain1", "muse_books:raw/holdout"), (3, 3, 3), 12, 6)}


def _data_cfg(name, folders):
    splits, documents, words, chunk = SPECS[name]
    return {"source": "benchmark", "benchmark": _cfg(name, folders, splits, documents, words, chunk),
            "retain_eval_size": 4, "text_prefix_tokens": 0}


@pytest.fixture(scope="module")
def prepared(folders, tmp_path_factory):
    """The data folder of each benchmark's study, as the workflow's first stage writes it."""
    out = {}
    for name in SPECS:
        data_dir = tmp_path_factory.mktemp(name) / "data"
        prepare_data(str(data_dir), data_cfg=_data_cfg(name, folders), seed=0)
        out[name] = data_dir
    return out


def test_the_plan_sees_the_cut_the_data_stage_makes(prepared, folders):
    from mrd_unlearning import calibration, plan

    for name, data_dir in prepared.items():
        data, cfg = load_study_data(data_dir), _data_cfg(name, folders)
        sizes = plan.data_sizes(cfg)
        assert (sizes["forget"], sizes["retain"], sizes["retain_eval"]) == (
            len(data.forget), len(data.retain), len(data.retain_eval))
        assert list(calibration.planned_groups(cfg)) == [r[GROUP] for r in data.forget]
        assert calibration._planned_kind(cfg) == data.kind


def test_the_data_folder_names_its_sources_and_carries_the_evaluation_sets(prepared, folders):
    manifest = json.loads((prepared["whp"] / "manifest.json").read_text())
    assert manifest["source"] == "benchmark" and manifest["benchmark"]["name"] == "whp"
    assert set(manifest["sha256"]) >= {"muse_books:raw/forget", "whp:soul/hp_test_qa_100", "whp:trivia/hp_trivia_test"}
    data = load_study_data(prepared["whp"])
    assert data.kind == "text" and set(data.benchmark["sets"]) == {"soul_100", "soul_300", "trivia"}
    assert data.benchmark["sets"]["trivia"] == read_benchmark("whp", "trivia", "hp_trivia_test", folders["whp"])[:3]
    assert len(data.retain_eval) == 4 and data.forget_eval == data.forget
    folder = prepared["whp"].parent / "more"  # more retain rows asked than the cut gives: all of them
    prepare_data(str(folder), data_cfg={"source": "benchmark", "retain_eval_size": 1000, "text_prefix_tokens": 0,
                                        "benchmark": _cfg("whp", folders, ("muse_books:raw/forget", "muse_books:raw/retain1",
                                                                           "muse_books:raw/holdout"), (3, 3, 3), 12, 6)},
                 seed=0)
    more = load_study_data(folder)
    assert more.retain_eval == more.retain
    wmdp = load_study_data(prepared["wmdp"])
    assert wmdp.kind == "qa" and len(wmdp.forget) == 5 and len(wmdp.holdout) == 5


def test_each_benchmark_is_evaluated_by_its_own_metrics(prepared, tokenizer):
    model = tiny_model(tokenizer, seed=2)
    kw = dict(max_length=MAX_LENGTH, max_new_tokens=8, batch_size=8, device="cpu", gradient_attack=False)
    for name, data_dir in prepared.items():
        data = load_study_data(data_dir)
        summary, samples = evaluation.evaluate(model, tokenizer, data, **kw)
        assert summary["benchmark"] == name
        expected = ([f"{split}_acc" for split in data.benchmark["sets"]] if name == "wmdp"
                    else list(benchmarks.METRICS[name]))
        assert set(expected) <= set(benchmarks.METRICS[name])
        for key in expected:
            assert np.isfinite(summary[key]) or key == "privleak", (name, key)  # PrivLeak needs the retain model
        for split, rows in data.benchmark["sets"].items():
            if not split.endswith("_icl"):
                assert (samples.split == split).sum() == len(rows), (name, split)
        if name == "muse_news":  # x 100, the mean of the per-row ROUGE-L F1
            assert summary["verbmem_f"] == pytest.approx(100 * samples[samples.split == "verbmem"].rouge_l.mean())
        if name == "wmdp":
            for part in ("wmdp_forget", "wmdp_holdout", "wmdp_retain"):
                assert summary[f"{part}_acc"] == pytest.approx(samples[samples.split == part].correct.mean())
        if name == "whp":  # trivia: the true answer's summed log-likelihood against the false one's
            trivia = data.benchmark["sets"]["trivia"]
            rows = [{"question": r["question"], "answer": r["true_answer"]} for r in trivia]
            score = dict(max_length=MAX_LENGTH, batch_size=8, device="cpu")
            true = evaluation._score(model, tokenizer, rows, [r["true_answer"] for r in trivia], **score)
            false = evaluation._score(model, tokenizer, rows, [r["false_answer"] for r in trivia], **score)
            hand = true["loglik"] * true["answer_tokens"] > false["loglik"] * false["answer_tokens"]
            assert samples[samples.split == "trivia"].correct.tolist() == hand.astype(float).tolist()


def test_the_metrics_the_benchmarks_add_match_hand_computations():
    # sacreBLEU: identical text scores 100, no shared word 0; 13a splits off the final period
    assert metrics.sentence_bleu(["the cat sat on the mat ."], ["the cat sat on the mat ."])[0] == pytest.approx(100)
    assert metrics.sentence_bleu(["dogs run"], ["the cat sat on the mat"])[0] == 0
    # ROUGE-L recall, unstemmed (SOUL's continuations) against stemmed (TOFU's): "cats" is not "cat" unstemmed
    assert metrics.rouge_l_recall(["the cats sat"], ["the cat sat down"], stemmer=False)[0] == pytest.approx(2 / 4)
    assert metrics.rouge_l_recall(["the cats sat"], ["the cat sat down"])[0] == pytest.approx(3 / 4)
    # MUSE cuts a KnowMem answer where the next few-shot question would start
    assert evaluation._until(" 1472\n\nQuestion: When", evaluation.KNOWMEM_STOPS) == "1472"
    assert evaluation._until("Paris\nQuestion: x", evaluation.KNOWMEM_STOPS) == "Paris"


def test_the_report_names_the_cut_and_tabulates_the_benchmarks_metrics(prepared):
    import pandas as pd

    from mrd_unlearning import report

    assert report._group_unit(str(prepared["muse_news"])) == "passages"
    assert report._group_unit(str(prepared["wmdp"])) == "questions"
    setup = report._setup(str(prepared["muse_news"]), {"source": "smollm2_gguf"}, {"n_train": 30, "parameters": 1e6},
                          {"n_train": 12, "parameters": 1e6}, {"data_kind": "text", "model_utility_parts": 2,
                                                               "utility_splits": ["retain"]})
    assert "MUSE-News (forget 18 samples from `muse_news:verbmem/forget`" in setup
    assert "passages of 12 words, samples of 6 words" in setup
    evals = {role: {"benchmark": "wmdp", "wmdp_forget_acc": acc, "wmdp_holdout_acc": 0.25, "wmdp_retain_acc": 0.9}
             for role, acc in (("target", 1.0), ("retain", 0.3))}
    runs = pd.DataFrame({"algorithm": ["ga"] * 4, "sampler": ["uniform", "uniform", "mrd", "mrd"],
                         "wmdp_forget_acc": [0.2, 0.4, 0.1, 0.3], "wmdp_holdout_acc": 0.25, "wmdp_retain_acc": 0.8})
    part = report._benchmark({0: {"target_eval": evals["target"], "retain_eval": evals["retain"]}}, runs)
    table = part["table"].set_index("model")
    assert table.loc["target (replicate 0)", "accuracy, forgotten questions"] == 1.0
    assert table.loc["ga / uniform (mean of 2 runs)", "accuracy, forgotten questions"] == pytest.approx(0.3)
    assert table.loc["ga / mrd (mean of 2 runs)", "accuracy, forgotten questions"] == pytest.approx(0.2)
    assert part["name"] == "WMDP" and part["lacks"].startswith("MMLU, WMDP's utility measure, is not run")
    one = report._benchmark({0: {"target_eval": evals["target"], "retain_eval": evals["retain"]}}, runs.iloc[:1])
    assert list(one["table"].model)[-1] == "ga / uniform (1 run)"
    assert report._benchmark({0: {"target_eval": {}, "retain_eval": {}}}, runs) == {}


def test_the_results_pages_show_the_benchmarks_own_metrics(tmp_path):
    """A snapshot keeps the report's benchmark table, read from the run's evaluations (JSON: a
    metric the unlearned models lack is null), and its page renders it; a study of other data has none."""
    import pandas as pd

    from mrd_unlearning import report, snapshot

    evals = {role: {"benchmark": "wmdp", "wmdp_forget_acc": acc, "wmdp_holdout_acc": 0.25, "wmdp_retain_acc": 0.9}
             for role, acc in (("target", 1.0), ("retain", 0.3))}
    loaded = {0: {"target_eval": evals["target"], "retain_eval": evals["retain"]}}
    runs = pd.DataFrame({"algorithm": ["ga"] * 4, "sampler": ["uniform", "uniform", "mrd", "mrd"],
                         "wmdp_forget_acc": [0.2, 0.4, 0.1, 0.3], "wmdp_retain_acc": 0.8})  # no holdout accuracy
    run = tmp_path / "results" / "wmdp_study"
    for role in ("target", "retain"):
        (run / "eval" / "rep0").mkdir(parents=True, exist_ok=True)
        (run / "eval" / "rep0" / f"{role}.json").write_text(json.dumps(evals[role]))
    (run / "tables").mkdir()
    runs.to_csv(run / "tables" / "unlearning.csv", index=False)
    own = json.loads(json.dumps(snapshot.own_evaluation(run, [0])))
    assert own == json.loads(json.dumps(report.benchmark_metrics(loaded, runs)))
    assert own["name"] == "WMDP" and own["not_run"].startswith("MMLU")
    assert own["models"][-1] == {"model": "ga / mrd (mean of 2 runs)", "accuracy, forgotten questions": 0.2,
                                 "accuracy, held-out questions": None, "accuracy, retained questions": 0.8}
    snap = snapshot.load(ROOT / "docs" / "results" / "default")
    assert "own metrics" not in snapshot.study_page(snap)
    page = snapshot.study_page({**snap, "benchmark": own})
    assert "## WMDP's own metrics" in page and "this study lacks: MMLU" in page
    assert ("| model | accuracy, forgotten questions | accuracy, held-out questions | accuracy, retained questions |"
            in page)
    assert "| target (replicate 0) | 1.00 | 0.25 | 0.90 |" in page
    assert "| ga / mrd (mean of 2 runs) | 0.20 | n/a | 0.80 |" in page
    assert report.benchmark_metrics({0: {"target_eval": {}, "retain_eval": {}}}, runs) == {}


def test_make_plan_names_a_missing_benchmark_folder_in_one_line(tmp_path, capsys):
    from mrd_unlearning import plan

    config = tmp_path / "whp.yaml"
    config.write_text(json.dumps({"name": "t", "data": {"source": "benchmark", "benchmark": _cfg(
        "whp", {"whp": str(tmp_path / "nowhere"), "muse_books": str(tmp_path / "nowhere")},
        ("muse_books:raw/forget", "muse_books:raw/retain1", "muse_books:raw/holdout"))}}))
    assert plan.main(["--config", str(config), "--simulations", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nowhere/raw/forget.jsonl: no such file" in err and "\n" not in err
