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
    with pytest.raises(DataError, match="in both forget25 and retain75"):
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
