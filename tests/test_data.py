import json
import shutil

import pandas as pd
import pytest

from mrd_unlearning.data.loader import DataError, load_study_data, read_split
from mrd_unlearning.stages import prepare_data

from .conftest import TINY_DATA


def test_generator_is_deterministic(tmp_path, data_dir):
    prepare_data(str(tmp_path / "again"), data_cfg=TINY_DATA, seed=0)
    for f in sorted(data_dir.iterdir()):
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes(), f.name
    prepare_data(str(tmp_path / "other"), data_cfg=TINY_DATA, seed=1)
    assert (tmp_path / "other" / "full.json").read_bytes() != (data_dir / "full.json").read_bytes()


def test_split_relations(study_data, data_dir):
    d = study_data
    assert d.retain + d.forget == d.full  # TOFU order: forget people last
    assert len(d.forget) == 2 * 3  # 25% of 8 people x 3 attributes
    assert len(d.holdout) == len(d.forget)
    assert not {r["question"] for r in d.holdout} & {r["question"] for r in d.full}
    assert [r["answer"] for r in d.forget_eval] == [r["answer"] for r in d.forget]
    for r in d.forget_eval + d.retain_eval:
        assert r["paraphrased_answer"] != r["answer"] and len(r["perturbed_answer"]) == 2
        assert r["paraphrased_answer"] not in r["perturbed_answer"]
    factors = pd.read_csv(data_dir / "factors.csv")
    assert list(factors.sample_id) == list(range(len(d.forget)))
    assert factors.value_frequency.between(0, 1, inclusive="right").all()
    for row, qa in zip(factors.itertuples(), d.forget):
        assert row.value in qa["answer"]


def _copy(data_dir, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(data_dir, out)
    return out


def test_malformed_line_names_file_and_line(data_dir, tmp_path):
    out = _copy(data_dir, tmp_path)
    lines = (out / "forget25.json").read_text().splitlines()
    lines[2] = lines[2][:-3]
    (out / "forget25.json").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"forget25\.json:3: malformed JSON"):
        load_study_data(out)


def test_missing_field(data_dir, tmp_path):
    out = _copy(data_dir, tmp_path)
    rows = [json.loads(x) for x in (out / "retain_perturbed.json").read_text().splitlines()]
    del rows[1]["perturbed_answer"]
    (out / "retain_perturbed.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"retain_perturbed\.json:2: missing field\(s\) \['perturbed_answer'\]"):
        read_split(out / "retain_perturbed.json")


def test_empty_forget_set(data_dir, tmp_path):
    out = _copy(data_dir, tmp_path)
    (out / "forget25.json").write_text("")
    with pytest.raises(DataError, match="forget25.json: the split is empty"):
        load_study_data(out)


def test_forget_retain_overlap(data_dir, tmp_path):
    out = _copy(data_dir, tmp_path)
    with (out / "retain75.json").open("a") as fh:
        fh.write((out / "forget25.json").read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match="in both forget25.json and retain75.json"):
        load_study_data(out)


def test_holdout_overlapping_training_data(data_dir, tmp_path):
    out = _copy(data_dir, tmp_path)
    with (out / "holdout25.json").open("a") as fh:
        fh.write((out / "full.json").read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match="holdout sample"):
        load_study_data(out)


def test_missing_file(data_dir, tmp_path):
    out = _copy(data_dir, tmp_path)
    (out / "holdout25.json").unlink()
    with pytest.raises(DataError, match="data file not found: .*holdout25.json"):
        load_study_data(out)


# --- any TOFU-format folder (data.source local), text rows, checks before compute ----------------

LOCAL_NAMES = {"forget": "to_forget.jsonl", "retain": "keep.jsonl", "holdout": "never_seen.jsonl",
               "forget_eval": "to_forget_eval.jsonl", "retain_eval": "keep_eval.jsonl"}
SYNTHETIC_FILES = {"forget": "forget25.json", "retain": "retain75.json", "holdout": "holdout25.json",
                   "forget_eval": "forget25_perturbed.json", "retain_eval": "retain_perturbed.json"}


def local_folder(data_dir, folder):
    """The synthetic splits under other names, without `full` and without utility splits."""
    folder.mkdir(parents=True)
    for role, name in LOCAL_NAMES.items():
        shutil.copy(data_dir / SYNTHETIC_FILES[role], folder / name)
    return folder


def local_cfg(folder, **splits):
    return {"source": "local", "retain_eval_size": None, "local": {"path": str(folder), "splits": splits or LOCAL_NAMES}}


def test_local_folder_with_its_own_names_reads_as_the_synthetic_study(data_dir, study_data, tmp_path):
    out = tmp_path / "prepared"
    prepare_data(str(out), data_cfg=local_cfg(local_folder(data_dir, tmp_path / "mine")), seed=0)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]  # read where it is
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["sha256"]) == set(LOCAL_NAMES.values())
    data = load_study_data(out)
    assert data.kind == "qa" and data.utility == {}
    assert data.full == study_data.retain + study_data.forget  # derived: forget + retain, forget last
    assert data.forget_eval == study_data.forget_eval and len(data.retain_eval) == len(study_data.retain_eval)


def test_a_splits_map_naming_a_missing_file_is_named_before_anything_is_written(data_dir, tmp_path):
    folder = local_folder(data_dir, tmp_path / "mine")
    with pytest.raises(DataError, match=r"config key 'data.local.splits.holdout': no file .*nope\.jsonl"):
        prepare_data(str(tmp_path / "prepared"), data_cfg=local_cfg(folder, **{**LOCAL_NAMES, "holdout": "nope.jsonl"}),
                     seed=0)
    assert not (tmp_path / "prepared").exists()


def test_rows_mixing_qa_and_text_are_an_error(data_dir, tmp_path):
    folder = local_folder(data_dir, tmp_path / "mine")
    with (folder / "keep.jsonl").open("a") as fh:
        fh.write(json.dumps({"text": "A line of plain text."}) + "\n")
    n = len((folder / "keep.jsonl").read_text().splitlines())
    with pytest.raises(DataError, match=rf"keep\.jsonl:{n}: a text row among qa rows"):
        prepare_data(str(tmp_path / "prepared"), data_cfg=local_cfg(folder), seed=0)
    # and across splits: text forget rows with QA retain rows
    other = local_folder(data_dir, tmp_path / "other")
    rows = [json.loads(x) for x in (other / "to_forget.jsonl").read_text().splitlines()]
    for name in ("to_forget.jsonl", "to_forget_eval.jsonl"):
        (other / name).write_text("".join(json.dumps({"text": r["answer"]}) + "\n" for r in rows))
    with pytest.raises(DataError, match="rows mixing QA and text"):
        prepare_data(str(tmp_path / "prepared2"), data_cfg=local_cfg(other), seed=0)


def test_text_rows_read_check_and_carry_their_prefix(tmp_path):
    cfg = {**TINY_DATA, "synthetic": {**TINY_DATA["synthetic"], "form": "text"}, "text_prefix_tokens": 2}
    prepare_data(str(tmp_path / "text"), data_cfg=cfg, seed=0)
    data = load_study_data(tmp_path / "text")
    assert data.kind == "text" and len(data.forget) == 6 and data.forget_eval == data.forget
    assert all(set(r) == {"text", "group", "_prefix"} and r["_prefix"] == 2 for r in data.full + data.holdout)
    (tmp_path / "bad.json").write_text(json.dumps({"text": ""}) + "\n")
    with pytest.raises(DataError, match=r"bad\.json:1: field 'text' must be a non-empty string"):
        read_split(tmp_path / "bad.json")


def test_a_sample_longer_than_max_length_is_named_by_file_line_and_length(data_dir, tokenizer, tmp_path):
    from mrd_unlearning.stages import check_lengths

    folder = local_folder(data_dir, tmp_path / "mine")
    rows = (folder / "never_seen.jsonl").read_text().splitlines()
    long_row = json.loads(rows[4])
    long_row["answer"] = " ".join(["word"] * 200)
    rows[4] = json.dumps(long_row)
    (folder / "never_seen.jsonl").write_text("\n".join(rows) + "\n")
    prepare_data(str(tmp_path / "prepared"), data_cfg=local_cfg(folder), seed=0)
    tok_dir = tmp_path / "tok"
    tokenizer.save_pretrained(tok_dir)
    out = tmp_path / "lengths.json"
    with pytest.raises(DataError, match=r"(?s)1 sequence\(s\) longer than model.max_length=96.*never_seen\.jsonl:5 \(holdout, "
                                        r"answer\): \d{3} tokens"):
        check_lengths(str(tmp_path / "prepared"), str(out), base=str(tok_dir), max_length=96)
    assert not out.exists()
    check_lengths(str(tmp_path / "prepared"), str(out), base=str(tok_dir), max_length=4096)
    lengths = json.loads(out.read_text())
    assert lengths["longest"]["holdout"] > 200 and lengths["rows"]["forget"] == 6


def test_groups_come_from_the_rows_or_each_sample_alone(data_dir, study_data, tmp_path):
    from mrd_unlearning.data.loader import forget_groups

    groups = forget_groups(study_data)  # synthetic: the person, 3 facts each
    assert len(groups) == 6 and len(set(groups)) == 2 and groups[:3] == [groups[0]] * 3
    folder = local_folder(data_dir, tmp_path / "mine")
    for name in LOCAL_NAMES.values():  # a local folder without group fields
        rows = [json.loads(x) for x in (folder / name).read_text().splitlines()]
        (folder / name).write_text("".join(json.dumps({k: v for k, v in r.items() if k != "group"}) + "\n"
                                           for r in rows))
    prepare_data(str(tmp_path / "prepared"), data_cfg=local_cfg(folder), seed=0)
    assert forget_groups(load_study_data(tmp_path / "prepared")) == [f"sample{i}" for i in range(6)]
