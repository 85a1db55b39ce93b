"""Real TOFU through the one loader: every split, its counts and relations, the study slices, the
hub route (offline, with `datasets.load_dataset` standing in) and clear errors."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from mrd_unlearning.data import tofu
from mrd_unlearning.data.loader import DataError, load_study_data, read_split
from mrd_unlearning.stages import prepare_data


def find_tofu() -> Path | None:
    """$MRD_TOFU_DIR; else a shared/data/tofu beside the checkout or beside any folder above it
    (../shared/data/tofu here); else the project machines' shared copy. Absent: TOFU tests skip."""
    repo = Path(__file__).resolve().parents[1]
    candidates = [os.environ.get("MRD_TOFU_DIR"), *[p / "shared/data/tofu" for p in repo.parents],
                  "/work/shared/data/tofu"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "full.json").is_file():
            return Path(candidate).resolve()
    return None


TOFU = find_tofu()
needs_tofu = pytest.mark.skipif(TOFU is None, reason="TOFU not found (set MRD_TOFU_DIR)")
STEMS = ["full", "forget01", "forget05", "forget10", "retain99", "retain95", "retain90", "holdout01", "holdout05",
         "holdout10", "forget01_perturbed", "forget05_perturbed", "forget10_perturbed", "retain_perturbed",
         "real_authors", "real_authors_perturbed", "world_facts", "world_facts_perturbed"]


def tofu_cfg(path, split="forget01", **overrides):
    cfg = {"path": None if path is None else str(path), "hub_id": "locuslab/TOFU", "forget_split": split,
           "retain_authors": None, "utility_eval_size": None}
    return {"source": "tofu", "retain_eval_size": overrides.pop("retain_eval_size", None), "tofu": {**cfg, **overrides}}


def qa(rows):
    return [(r["question"], r["answer"]) for r in rows]


@pytest.fixture(scope="module")
def splits():
    return {stem: read_split(TOFU / f"{stem}.json") for stem in STEMS}


@needs_tofu
def test_every_split_reads_with_tofu_counts(splits):
    counts = {stem: len(rows) for stem, rows in splits.items()}
    assert counts == {"full": 4000, "forget01": 40, "forget05": 200, "forget10": 400, "retain99": 3960,
                      "retain95": 3800, "retain90": 3600, "holdout01": 40, "holdout05": 200, "holdout10": 400,
                      "forget01_perturbed": 40, "forget05_perturbed": 200, "forget10_perturbed": 400,
                      "retain_perturbed": 400, "real_authors": 100, "real_authors_perturbed": 100,
                      "world_facts": 117, "world_facts_perturbed": 117}


@needs_tofu
@pytest.mark.parametrize("nn", ["01", "05", "10"])
def test_forget_and_retain_partition_full_in_order(splits, nn):
    retain = splits[f"retain{100 - int(nn):02d}"]
    assert qa(retain) + qa(splits[f"forget{nn}"]) == qa(splits["full"])  # forget authors are the last ones
    perturbed = splits[f"forget{nn}_perturbed"]
    assert qa(perturbed) == qa(splits[f"forget{nn}"])
    assert all(len(r["perturbed_answer"]) == 5 and r["paraphrased_answer"] for r in perturbed)
    assert not set(qa(splits[f"holdout{nn}"])) & set(qa(splits["full"]))


@needs_tofu
def test_perturbed_evaluation_files_align(splits):
    assert qa(splits["retain_perturbed"]) == qa(splits["full"])[:400]  # the first 20 authors, all in retain90
    for name in ("real_authors", "world_facts"):
        assert [r["question"] for r in splits[f"{name}_perturbed"]] == [r["question"] for r in splits[name]]
        assert all(len(r["perturbed_answer"]) >= 3 for r in splits[f"{name}_perturbed"])


@needs_tofu
@pytest.mark.parametrize("split,n_forget", [("forget01", 40), ("forget05", 200), ("forget10", 400)])
def test_prepared_study_reads_tofu_where_it_is(tmp_path, split, n_forget):
    out = tmp_path / "data"
    prepare_data(str(out), data_cfg=tofu_cfg(TOFU, split), seed=0)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]  # nothing copied
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / manifest["root"]).resolve() == TOFU
    assert manifest["sha256"]["full.json"] == tofu.sha256(TOFU / "full.json")
    data = load_study_data(out)
    assert (len(data.forget), len(data.retain), len(data.full)) == (n_forget, 4000 - n_forget, 4000)
    assert (len(data.retain_eval), len(data.holdout)) == (400, n_forget)
    assert {k: len(v) for k, v in data.utility.items()} == {"real_authors": 100, "world_facts": 117}


@needs_tofu
def test_study_slice_keeps_whole_authors(tmp_path):
    out = tmp_path / "data"
    prepare_data(str(out), data_cfg=tofu_cfg(TOFU, retain_authors=2, retain_eval_size=20, utility_eval_size=10), seed=0)
    data = load_study_data(out)
    full = read_split(TOFU / "full.json")
    assert qa(data.retain) == qa(full[:40]) and qa(data.forget) == qa(full[-40:])
    assert qa(data.full) == qa(data.retain) + qa(data.forget)
    assert len(data.retain_eval) == 20 and {len(v) for v in data.utility.values()} == {10}


@needs_tofu
def test_retain_eval_outside_the_slice_is_an_error(tmp_path):
    with pytest.raises(DataError, match="retain_authors"):
        prepare_data(str(tmp_path / "data"), data_cfg=tofu_cfg(TOFU, retain_authors=1, retain_eval_size=40), seed=0)
    assert not (tmp_path / "data").exists()


@needs_tofu
def test_missing_split_file_is_named(tmp_path):
    partial = tmp_path / "tofu"
    shutil.copytree(TOFU, partial)
    (partial / "world_facts_perturbed.json").unlink()
    with pytest.raises(DataError, match=r"TOFU split file missing: .*world_facts_perturbed\.json"):
        prepare_data(str(tmp_path / "data"), data_cfg=tofu_cfg(partial), seed=0)
    with pytest.raises(DataError, match="no TOFU folder"):
        prepare_data(str(tmp_path / "data"), data_cfg=tofu_cfg(tmp_path / "nowhere"), seed=0)


@needs_tofu
def test_hub_route_writes_tofu_format_files(tmp_path, monkeypatch):
    """Offline stand-in for `datasets.load_dataset(hub_id, split_name)`: the same JSON files."""
    import datasets

    asked = []

    def fake_load_dataset(hub_id, name, split):
        asked.append((hub_id, name, split))
        return datasets.Dataset.from_json(str(TOFU / f"{name}.json"))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    out = tmp_path / "data"
    prepare_data(str(out), data_cfg=tofu_cfg(None, retain_authors=1, retain_eval_size=10), seed=0)
    assert {name for _, name, _ in asked} == set(tofu.split_names("forget01").values())
    assert {hub for hub, _, _ in asked} == {"locuslab/TOFU"}
    assert json.loads((out / "manifest.json").read_text())["root"] == "."
    data = load_study_data(out)
    assert qa(data.forget) == qa(read_split(TOFU / "forget01.json"))
    assert data.forget_eval[0]["perturbed_answer"] == read_split(TOFU / "forget01_perturbed.json")[0]["perturbed_answer"]


def test_the_hub_route_offline_names_both_routes_and_leaves_nothing(tmp_path, monkeypatch):
    """The shipped TOFU studies fetch from the hub; where that fails (offline), one line says so
    and names the local-copy overlay, and no data folder is left half-written."""
    import datasets

    def offline(hub_id, name, split):
        raise ConnectionError(f"Couldn't reach '{hub_id}' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        prepare_data(str(tmp_path / "data"), data_cfg=tofu_cfg(None, retain_authors=1), seed=0)
    message = str(err.value)
    assert "\n" not in message and "is fetched from the hub (locuslab/TOFU), which failed: Couldn't reach" in message
    assert "set data.tofu.path to its folder (config/local_tofu.yaml" in message
    assert not (tmp_path / "data").exists() and not list(tmp_path.iterdir())
    with pytest.raises(DataError, match="or to null to fetch locuslab/TOFU from the hub"):
        prepare_data(str(tmp_path / "data"), data_cfg=tofu_cfg(tmp_path / "nowhere"), seed=0)


def test_shipped_tofu_studies_read_the_hub_unless_the_local_overlay_is_named():
    from mrd_unlearning.config import study_config

    root = Path(__file__).resolve().parents[1]
    for name in ("tofu_smollm2.yaml", "tofu_smollm2_forget01.yaml"):
        study = root / "config" / name
        assert study_config(study)["data"]["tofu"]["path"] is None
        overlaid = study_config([study, root / "config" / "local_tofu.yaml"])
        assert overlaid["data"]["tofu"]["path"] == "../shared/data/tofu" and overlaid["name"] == name[:-5]


def test_unknown_forget_split_names_allowed_values():
    with pytest.raises(ValueError, match=r"forget01"):
        tofu.split_names("forget20")


@needs_tofu
def test_tofu_samples_are_grouped_by_author(tmp_path):
    """TOFU's 20 QA per author are consecutive in every split: forget01 is 2 authors, forget05 10."""
    from mrd_unlearning.data.loader import forget_groups

    for split, n_authors in (("forget01", 2), ("forget05", 10)):
        out = tmp_path / split
        prepare_data(str(out), data_cfg=tofu_cfg(TOFU, split), seed=0)
        groups = forget_groups(load_study_data(out))
        assert len(set(groups)) == n_authors
        assert groups == [groups[20 * (i // 20)] for i in range(len(groups))]  # blocks of 20


@needs_tofu
def test_questions_per_author_span_every_author_and_stay_out_of_training(tmp_path):
    """forget05 with 4 questions per author: 40 questions of all 10 authors, the same seeded choice
    in forget, its evaluation file and holdout; the authors' 16 other questions in neither
    fine-tuning set; the choice is in the manifest and moves only with the seed."""
    from mrd_unlearning.data.loader import forget_groups

    def prepared(name, seed):
        prepare_data(str(tmp_path / name), data_cfg=tofu_cfg(TOFU, "forget05", per_author=4, retain_authors=2,
                                                             retain_eval_size=20), seed=seed)
        return load_study_data(tmp_path / name), json.loads((tmp_path / name / "manifest.json").read_text())

    data, manifest = prepared("a", 0)
    forget05 = read_split(TOFU / "forget05.json")
    chosen = manifest["subset"]["forget"]
    assert manifest["subset"]["forget_eval"] == manifest["subset"]["holdout"] == chosen
    assert [i // 20 for i in chosen] == [a for a in range(10) for _ in range(4)]  # 4 of each author's 20
    assert qa(data.forget) == [qa(forget05)[i] for i in chosen] == qa(data.forget_eval)
    assert qa(data.holdout) == [qa(read_split(TOFU / "holdout05.json"))[i] for i in chosen]
    groups = forget_groups(data)
    assert len(set(groups)) == 10 and groups == [f"forget05/{i // 20}" for i in chosen]
    others = set(qa(forget05)) - set(qa(data.forget))
    assert len(others) == 160 and not others & set(qa(data.full))
    assert qa(data.full) == qa(data.retain) + qa(data.forget)
    assert prepared("b", 0)[1]["subset"] == manifest["subset"]
    assert prepared("c", 1)[1]["subset"]["forget"] != chosen


def test_questions_per_author_outside_an_author_is_refused():
    with pytest.raises(ValueError, match="data.tofu.per_author"):
        tofu.questions_per_author("forget05", 21, seed=0)
    assert len(tofu.questions_per_author("forget10", 2, seed=0)) == 40
