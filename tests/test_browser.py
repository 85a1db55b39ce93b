"""The per-sample browser (results/<name>/samples.html): its rows by hand, and the page as headless
Chromium renders it: every sample a row, sorting by a column, filtering by group and tier, and a
screenshot of the table."""
import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest

from mrd_unlearning.browser import sample_rows

from .conftest import CHROMIUM, needs_browser, rendered_dom


def test_rows_hold_the_mean_over_replicates_ranks_and_tiers_by_hand():
    scores = pd.DataFrame({"replicate": [0, 0, 0, 1, 1, 1], "sample_id": [0, 1, 2] * 2, "group": ["a", "a", "b"] * 2,
                           "mrd": [1.0, 3.0, 2.0, 3.0, 5.0, 0.0], "loss": [0.1, 0.3, 0.2, 0.1, 0.3, 0.2],
                           "update_count_frac": [2.0, 9.0, 5.0, 4.0, 7.0, 5.0], "censored": [False] * 5 + [True]})
    forget = [{"question": f"q{i}?", "answer": f"a{i}."} for i in range(3)]
    target = pd.DataFrame({"loglik": [-0.1, -0.2, -0.3], "generation": ["x", "y", "z"]})
    curves = pd.DataFrame({"sample_id": [1, 0, 0, 0], "updates": [0, 2, 0, 1], "loglik": [-0.2, -1.5, -0.1, -0.9],
                           "retain_level": [-0.1, -1.0, -1.0, -1.0]})  # sample 2 left out of the run
    rows, columns = sample_rows(scores, forget, {"target": target}, {"update_count": curves})
    assert columns["primary"] == "update_count_frac" and columns["scores"] == ["mrd", "loss"]
    assert columns["curves"] == ["update_count"]
    by_id = {r["sample_id"]: r for r in rows}
    assert [by_id[i]["values"]["mrd"] for i in range(3)] == [2.0, 4.0, 1.0]  # means over the two replicates
    assert [by_id[i]["ranks"]["mrd"] for i in range(3)] == [2, 1, 3]  # higher MRD: harder
    assert [by_id[i]["ranks"]["loss"] for i in range(3)] == [1, 3, 2]  # lower loss: harder (well memorised)
    assert [by_id[i]["ranks"]["update_count_frac"] for i in range(3)] == [3, 1, 2]
    assert [by_id[i]["tier"] for i in range(3)] == ["easy", "hard", "medium"]  # thirds of 3, 8, 5
    assert by_id[2]["censored"] == {"censored": True} and by_id[0]["group"] == "a"
    assert by_id[1]["question"] == "q1?" and by_id[1]["models"]["target"] == {"loglik": -0.2, "generation": "y"}
    assert by_id[0]["curves"] == {"update_count": {"loglik": [-0.1, -0.9, -1.5], "level": -1.0}}  # in update order
    assert by_id[1]["curves"]["update_count"] == {"loglik": [-0.2], "level": -0.1}
    assert by_id[2]["curves"] == {"update_count": None}


def _rendered(page, view: str) -> tuple[list[int], str]:
    """The sample ids of the table's rows, in order, and the page's text, after the page's script ran."""
    text = rendered_dom(f"file://{page}#{view}")
    return [int(i) for i in re.findall(r'<tr class="sample" data-id="(\d+)">', text)], text


@pytest.mark.e2e
@needs_browser
def test_the_page_in_a_real_browser_sorts_filters_and_shows_the_table(smoke_run, tmp_path):
    _, out, _ = smoke_run
    page = out / "samples.html"
    assert "[samples.html](samples.html)" in (out / "report.md").read_text()
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>',
                                page.read_text(), re.S).group(1).replace("<\\/", "</"))
    rows = {r["sample_id"]: r for r in data["rows"]}
    assert len(rows) == len(pd.read_csv(out / "mrd/scores.csv").sample_id.unique())

    shown, text = _rendered(page, "sort=mrd&dir=desc")
    assert sorted(shown) == sorted(rows) and f"{len(rows)} of {len(rows)} samples" in text
    # each row's likelihood curve, one line per ground-truth run, with as many points as the run recorded
    assert data["columns"]["curves"] == ["update_count", "update_count_sgd"]
    table = text[text.index("<tbody>"):text.rindex("</tbody>")]
    drawn = re.findall(r'<polyline class="loglik"[^>]* points="([^"]*)"', table)
    assert len(drawn) == 2 * len(rows)
    lengths = sorted(len(r["curves"][t]["loglik"]) for r in rows.values() for t in data["columns"]["curves"])
    assert sorted(len(points.split()) for points in drawn) == lengths
    expected = sorted(rows, key=lambda i: (-rows[i]["values"]["mrd"], i))
    assert shown == expected
    shown, _ = _rendered(page, "sort=sample_id&dir=asc")
    assert shown == sorted(rows)

    group = data["rows"][0]["group"]
    shown, text = _rendered(page, f"group={group}&tier=hard&sort=update_count_frac&dir=asc")
    wanted = [i for i in rows if rows[i]["group"] == group and rows[i]["tier"] == "hard"]
    assert sorted(shown) == sorted(wanted) and f"{len(wanted)} of {len(rows)} samples" in text
    assert [rows[i]["values"]["update_count_frac"] for i in shown] == \
        sorted(rows[i]["values"]["update_count_frac"] for i in wanted)

    shot = tmp_path / "samples.png"  # kept with the test's temporary files for a look, out of the shared study
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1400,1000", f"--screenshot={shot}", f"file://{page}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (1000, 1400) and np.std(pixels[..., :3]) > 0.05  # drawn, not a blank page
