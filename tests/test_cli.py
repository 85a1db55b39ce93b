"""`mrd-unlearning score` on data a researcher brings: a warning for every score that should not be
trusted as it stands, and bad flags, files and models stopped with one line that names them."""
import json
import re
import shutil

import pandas as pd
import pytest

from mrd_unlearning.cli import LEARNED_LOGLIK, TOKENIZER_FILES, _warnings, main
from mrd_unlearning.models import save_checkpoint

from .conftest import MAX_LENGTH, tiny_model


@pytest.fixture(scope="module")
def untrained(tokenizer, tmp_path_factory):
    """A model folder (weights, config, tokenizer) that has learned nothing."""
    out = tmp_path_factory.mktemp("untrained") / "model"
    save_checkpoint(tiny_model(tokenizer, seed=3), tokenizer, out)
    return out


def score(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `mrd-unlearning score ...`, run in this process."""
    try:
        code = main(["score", *map(str, argv), "--threads", "1"])
    except SystemExit as stop:  # argparse's errors
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_scores_on_an_untrained_model_come_with_their_warnings(untrained, data_dir, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    code, _, err = score(capsys, "--model", untrained, "--data", data_dir / "forget25.json", "--out", out,
                         "--K", 4, "--sigma-grid", 0.0001)
    assert code == 0, err
    scores, info = pd.read_csv(out), json.loads((tmp_path / "scores.csv.json").read_text())
    assert list(scores.columns)[-1] == "negative_drop"
    assert (scores.negative_drop == (scores["drop"] < 0)).all() and scores.negative_drop.any()
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3, err
    assert f"has not learned {len(scores)} of {len(scores)} rows" in warnings[0] and scores.loglik.max() < -3
    assert f"mean over all rows {scores.loglik.mean():.2f}" in warnings[0]
    assert "top of its grid (0.0001)" in warnings[1]
    negative = scores.sample_id[scores.negative_drop].tolist()
    assert warnings[2].startswith(f"warning: {len(negative)} sample(s) with a negative drop")
    assert f"sample_id {', '.join(map(str, negative[:10]))}" in warnings[2]
    assert (scores.mrd[scores.negative_drop] == 1e8).all() and info["negative_drops"] == len(negative)
    # before scoring: the most the run can take, from a timed pass and perturbation (K 4 x 1 sigma)
    assert re.search(r"rows: a pass \d+\.\d s, a perturbation \d+\.\d s; K 4 x up to 1 sigma value\(s\) = at most 4 "
                     r"perturbations, about \d", err), err


def test_no_warning_for_learned_rows_positive_drops_and_a_sigma_below_the_grids_top():
    scores = pd.DataFrame({"loglik": [-0.4, -0.8], "drop": [0.2, 0.1], "mrd": [5.0, 10.0],
                           "negative_drop": [False, False]})
    args = type("Args", (), {"sigma": "auto"})
    assert _warnings(scores, {"sigma": 0.01, "positive_share": 0.95}, args, [0.01, 0.1]) == []
    assert len(_warnings(scores.assign(loglik=LEARNED_LOGLIK - 0.01), {"sigma": 0.01, "positive_share": 1},
                         args, [0.01, 0.1])) == 1


def test_rows_the_model_has_not_learned_are_named_even_when_the_mean_looks_learned():
    scores = pd.DataFrame({"loglik": [-0.1] * 4 + [LEARNED_LOGLIK - 0.5] * 4, "drop": [0.1] * 8, "mrd": [10.0] * 8,
                           "negative_drop": [False] * 8})
    assert scores.loglik.mean() > LEARNED_LOGLIK  # 4 of 8 rows below the threshold, the mean above it
    (warning,) = _warnings(scores, {"sigma": 0.01, "positive_share": 1.0}, type("Args", (), {"sigma": "auto"}), [0.01, 1])
    assert "has not learned 4 of 8 rows" in warning and "sample_id 4, 5, 6, 7" in warning


@pytest.mark.parametrize("case", ["a folder", "the input", "a JSON name", "a file as its folder"])
def test_out_never_costs_a_user_a_file(case, untrained, data_dir, tmp_path, capsys):
    """--out is checked before any compute: a folder, the input or a name whose metadata would land
    on another file is refused on one line, and every file of the user's is left as it was."""
    data = tmp_path / "forget25.json"
    shutil.copy(data_dir / "forget25.json", data)
    (tmp_path / "scores.csv").mkdir()  # a folder of the user's, named like a CSV
    (tmp_path / "scores.csv" / "mine.txt").write_text("a user's file")
    if case == "a folder":
        out, expected = tmp_path / "scores.csv", "is a folder"
    elif case == "the input":
        data = tmp_path / "rows.csv"  # JSON Lines under a .csv name, given as both
        shutil.copy(data_dir / "forget25.json", data)
        out, expected = data, f"would overwrite --data {data}"
    elif case == "a JSON name":
        out, expected = tmp_path / "scores.json", "name a .csv file"
    else:
        out, expected = data / "scores.csv", f"{data} is a file, not a folder"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, _, err = score(capsys, "--model", untrained, "--data", data, "--out", out, "--K", 2, "--quiet")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and expected in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_out_beside_the_input_keeps_the_input(untrained, data_dir, tmp_path, capsys):
    """TOFU names its JSON Lines files .json: the metadata of forget25.csv is forget25.csv.json."""
    data = tmp_path / "forget25.json"
    shutil.copy(data_dir / "forget25.json", data)
    original = data.read_bytes()
    code, _, err = score(capsys, "--model", untrained, "--data", data, "--out", tmp_path / "forget25.csv", "--K", 2,
                         "--sigma", "0.01", "--quiet")
    assert code == 0, err
    assert data.read_bytes() == original and json.loads((tmp_path / "forget25.csv.json").read_text())["K"] == 2
    assert len(pd.read_csv(tmp_path / "forget25.csv")) == len(original.decode().splitlines())


@pytest.mark.parametrize("case", ["no model", "no tokenizer", "K 0", "sigma big", "grid negative", "JSON array",
                                  "no data", "malformed line", "max-length over the positions", "seed -1",
                                  "not UTF-8", "data folder", "mistyped model folder", "cuda without a GPU"])
def test_bad_flags_files_and_models_get_one_line_naming_them(case, untrained, data_dir, tmp_path, capsys,
                                                             monkeypatch):
    model, data = untrained, data_dir / "forget25.json"
    extra, expected = [], ""
    if case == "no model":
        model, expected = tmp_path / "nowhere", f"error: --model {tmp_path / 'nowhere'}: no such folder"
    elif case == "no tokenizer":
        model = tmp_path / "weights_only"
        shutil.copytree(untrained, model)
        for name in TOKENIZER_FILES:
            (model / name).unlink(missing_ok=True)
        expected = f"error: --model {model}: no tokenizer in the folder"
    elif case == "K 0":
        extra, expected = ["--K", 0], "mrd-unlearning score: error: argument --K: must be a positive integer, got '0'"
    elif case == "sigma big":
        extra, expected = ["--sigma", "big"], "error: argument --sigma: must be 'auto' or a positive number, got 'big'"
    elif case == "grid negative":
        extra, expected = ["--sigma-grid", "0.1", "-1"], "error: argument --sigma-grid: must be a positive number"
    elif case == "JSON array":
        data = tmp_path / "rows.json"
        data.write_text(json.dumps([{"question": "q?", "answer": "a."}], indent=1))
        expected = f"error: --data {data}: a JSON array; the file must be JSON Lines, one object per line"
    elif case == "no data":
        data = tmp_path / "missing.jsonl"
        expected = f"error: --data: data file not found: {data}"
    elif case == "malformed line":
        data = tmp_path / "bad.jsonl"
        data.write_text('{"question": "q?", "answer": "a."}\n{"question": \n')
        expected = f"error: --data: {data}:2: malformed JSON"
    elif case == "max-length over the positions":
        extra = ["--max-length", 2 * MAX_LENGTH]
        expected = f"error: --max-length {2 * MAX_LENGTH} is more than the model's {MAX_LENGTH} positions"
    elif case == "seed -1":
        extra, expected = ["--seed", -1], "error: argument --seed: must be a non-negative integer, got '-1'"
    elif case == "not UTF-8":
        data = tmp_path / "latin1.jsonl"
        data.write_bytes('{"question": "q?", "answer": "a."}\n{"question": "Où?", "answer": "Là."}\n'.encode("latin-1"))
        expected = f"error: --data {data}:2: not UTF-8 text (byte 0xf9)"
    elif case == "data folder":
        data, expected = data_dir, f"error: --data {data_dir}: a folder; give a JSON Lines file"
    elif case == "mistyped model folder":  # models/smolm2 while models/smollm2 exists: not a hub id
        monkeypatch.chdir(tmp_path)
        (tmp_path / "models" / "smollm2").mkdir(parents=True)
        model, expected = "models/smolm2", "error: --model models/smolm2: no such folder in models/ (it holds: smollm2)"
    elif case == "cuda without a GPU":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA device is available")
        extra, expected = ["--device", "cuda"], "error: --device cuda: no CUDA device is available here"
    code, out, err = score(capsys, "--model", model, "--data", data, "--out", tmp_path / "s.csv", *extra, "--quiet")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert not (tmp_path / "s.csv").exists()


def test_get_model_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert main(["get-model", "smollm2", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists and is not empty" in err
