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
    scores, info = pd.read_csv(out), json.loads(out.with_suffix(".json").read_text())
    assert list(scores.columns)[-1] == "negative_drop"
    assert (scores.negative_drop == (scores["drop"] < 0)).all() and scores.negative_drop.any()
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3, err
    assert f"mean log-likelihood {scores.loglik.mean():.2f} per token" in warnings[0] and scores.loglik.mean() < -3
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


@pytest.mark.parametrize("case", ["no model", "no tokenizer", "K 0", "sigma big", "grid negative", "JSON array",
                                  "no data", "malformed line", "max-length over the positions"])
def test_bad_flags_files_and_models_get_one_line_naming_them(case, untrained, data_dir, tmp_path, capsys):
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
