"""`make neutral`: the smoke study at a base commit and at the work tree, every output compared."""
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from mrd_unlearning import neutral

from .conftest import ROOT


def test_the_comparison_finds_a_changed_number_a_changed_key_and_a_missing_file(tmp_path):
    base, work = tmp_path / "base", tmp_path / "work"
    for side in (base, work):
        (side / "tables").mkdir(parents=True)
        (side / "logs").mkdir()
        pd.DataFrame({"x": [0.1, 0.2], "wall_s": [1.0, 2.0]}).to_csv(side / "tables" / "a.csv", index=False)
        (side / "m.json").write_text(json.dumps({"rho": 0.5, "wall_s": 3}))
        (side / "rows.json").write_text('{"q": 1}\n{"q": 2}\n')  # JSON lines: compared byte for byte
        (side / "logs" / "job.log").write_text(f"{side.name}\n")  # logs describe the run: not compared
    pd.DataFrame({"x": [0.1, 0.2], "wall_s": [9.0, 9.0]}).to_csv(work / "tables" / "a.csv", index=False)
    assert neutral.compare(base, work) == (3, [])  # timings aside, the same
    pd.DataFrame({"x": [0.1, 0.2000000001], "wall_s": [1.0, 2.0]}).to_csv(work / "tables" / "a.csv", index=False)
    (work / "m.json").write_text(json.dumps({"rho": 0.51, "wall_s": 3}))
    (work / "new.csv").write_text("y\n1\n")
    (work / "rows.json").write_text('{"q": 1}\n{"q": 3}\n')
    compared, differences = neutral.compare(base, work)
    assert compared == 3 and len(differences) == 4
    assert differences[0] == "new.csv: only in the work tree's run"
    assert differences[1] == "m.json: keys differ: rho" and differences[2] == "rows.json: bytes differ"
    assert differences[3].startswith("tables/a.csv")


@pytest.mark.e2e
def test_make_neutral_runs_both_sides_and_says_they_agree(tmp_path):
    """The data stage at HEAD and at the work tree (which leaves the data generator as HEAD has it
    in a fresh clone): no difference, exit status 0; an unknown base is a one-line error."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the project's git checkout")
    done = subprocess.run([sys.executable, "-m", "mrd_unlearning.neutral", "--base", "HEAD", "--cores", "1",
                           "results/smoke/data"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result files compared, 0 differ" in done.stdout
    done = subprocess.run([sys.executable, "-m", "mrd_unlearning.neutral", "--base", "no-such-commit"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip() == f"error: --base no-such-commit: not a commit of {ROOT}"
