"""Snapshots and what renders from them: the README's results table and the docs' results pages
are exactly what the committed snapshots give; `make snapshot` works on a finished study; the
documentation site builds strictly, offline."""
import functools
import inspect
import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from mrd_unlearning import provenance, snapshot

from .conftest import ROOT, needs_browser, rendered_dom


def test_the_readme_and_the_results_pages_are_rendered_from_the_committed_snapshots():
    """After a new snapshot, `python -m mrd_unlearning.snapshot --render` brings them in line."""
    snaps = snapshot.snapshots(ROOT / "docs" / "results")
    assert {"default", "tofu_smollm2"} <= set(snaps)
    for study, snap in snaps.items():
        assert (ROOT / "docs" / "results" / f"{study}.md").read_text() == snapshot.study_page(snap), study
        assert list(snap["verdicts"].claim) in (["C1", "C2", "C3", "C4"],
                                                ["C1", "C2", "C3", "C4", "C4a", "C4b", "C1-SGD", "C2-SGD"])
        assert snap["metrics"]["verdict_C2"] == snap["verdicts"].verdict[1]  # one run's files, not two
    readme = (ROOT / "README.md").read_text()
    assert snapshot.readme_block(snaps) in readme
    for study in ("default", "tofu_smollm2"):  # every verdict and interval of the table is in the README
        for r in snaps[study]["verdicts"].itertuples():
            assert f"**{r.verdict}**" in readme and snapshot._estimate(r) in readme


def test_pages_state_frozen_facts_and_the_check_names_stale_rules(tmp_path, monkeypatch):
    """A page says what ran, where and when, whatever the code is now; `--check` compares the run's
    code identities with the checkout's and names the rules changed since."""
    snap = snapshot.load(ROOT / "docs" / "results" / "default")
    current = provenance.rule_identities(ROOT)
    snap["run"]["record"] = {"recorded": "2026-12-05T10:00:00+00:00", "commit": "0123456789abcdef", "dirty": True,
                             "config_files": ["config/config.yaml"], "config_hash": "cafe", "jobs": 3,
                             "code": dict(current), "job_commits": {},
                             "machines": [{"cpu": "CPU X", "cores": 2, "memory_gib": 8.0, "gpus": [], "python": "3.11.7",
                                           "torch": "2.13.0", "jobs": 3}]}
    page = snapshot.study_page(snap)
    assert ("Run record of 2026-12-05: commit `0123456789ab` with uncommitted changes, configuration config/config.yaml "
            "(content hash `cafe`), 3 jobs on: CPU X, 2 cores, 8.0 GiB, no GPU, Python 3.11.7, torch 2.13.0 (3 jobs).") in page
    assert "run of 2026-12-05" in snapshot.readme_table([snap])
    record = snap["run"]["record"]  # jobs kept from a run at an earlier commit: the page names each commit
    rerun = {**record, "job_commits": {"f" * 40: 2, "0123456789abcdef" + "0" * 24 + " (dirty)": 1}}
    assert ("(3 jobs). The jobs ran at `ffffffffffff` (2 jobs), `0123456789ab` (dirty) (1 job).") in \
        snapshot.study_page({**snap, "run": {**snap["run"], "record": rerun}})
    one = {**record, "commit": "f" * 40, "job_commits": {"f" * 40: 3}}
    assert "The jobs ran at" not in snapshot.study_page({**snap, "run": {**snap["run"], "record": one}})
    for files, said in ((["config/config.yaml", "config/config.yaml"], "configuration config/config.yaml (content"),
                        (["config/a.yaml", "config/local.yaml", "config/config.yaml"],
                         "configuration config/a.yaml, config/local.yaml over config/config.yaml (content")):
        assert said in snapshot.study_page({**snap, "run": {**snap["run"], "record": {**snap["run"]["record"],
                                                                                      "config_files": files}}})
    snap["run"]["record"]["machines"][0]["cores"] = 1  # a run pinned to one core says so, in words that agree
    assert "CPU X, 1 core, 8.0 GiB" in snapshot.study_page(snap)
    assert "per replicate on 1 core (CPU X)" in snapshot.readme_table([snap])
    snap["run"]["record"]["machines"][0]["cores"] = 2
    monkeypatch.setattr(snapshot, "rule_identities", lambda *_: {**current, "mrd": "0" * 16})
    assert snapshot.study_page(snap) == page  # the page does not depend on today's code
    assert snapshot.stale_rules(snap) == ["mrd"]
    snap["run"]["feeds"] = sorted(set(current) - {"report", "mrd_figures"})  # a report edit stales no verdict
    monkeypatch.setattr(snapshot, "rule_identities", lambda *_: {**current, "mrd": "0" * 16, "report": "1" * 16,
                                                                "mrd_figures": "2" * 16})
    assert snapshot.stale_rules(snap) == ["mrd"]
    folder = tmp_path / "default"
    shutil.copytree(ROOT / "docs" / "results" / "default", folder)
    run = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**run, "record": snap["run"]["record"], "feeds": snap["run"]["feeds"]}))
    assert snapshot.check(tmp_path) == [f"{folder}: the code of 1 rule(s) feeding it changed since its run: mrd (rerun, then "
                                        "`make snapshot CONFIG=config/config.yaml`)"]
    monkeypatch.setattr(snapshot, "rule_identities", lambda *_: current)
    assert snapshot.check(tmp_path) == []
    del snap["run"]["record"]  # a snapshot from before run records: the snapshot machine only
    snap["run"]["machine"] = {"cpu": "CPU Y", "cores": 2, "memory_gib": 8.0, "gpus": [], "python": "3.11.7",
                              "torch": "2.13.0", "date": "2026-12-01"}
    assert snapshot.stale_rules(snap) is None and "taken before studies kept a run record" in snapshot.study_page(snap)


def test_dry_run_job_counts_are_read_from_snakemakes_table():
    out = ("Building DAG of jobs...\nJob stats:\njob          count\n---------  -------\nall              1\n"
           "report           2\nunlearn          8\ntotal           11\n\nReasons: ...")
    assert snapshot.dry_run_jobs(out) == {"all": 1, "report": 2, "unlearn": 8}
    nothing = "Building DAG of jobs...\nNothing to be done (all requested files are present)."
    assert snapshot.dry_run_jobs(nothing) == {}
    with pytest.raises(snapshot.ConfigError, match="neither a job table"):  # e.g. --quiet: not "up to date"
        snapshot.dry_run_jobs("Building DAG of jobs...")


def test_the_repository_stands_on_its_own():
    """No commit hash in the README and no pointer to a document the repository does not hold:
    every section the code, configs and docs refer to is here."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    texts = [p for p in tracked if p.endswith((".py", ".md", ".yaml", ".smk", ".j2", ".rst", ".toml")) or p == "Snakefile"]
    assert len(texts) > 50
    pointers = {p for p in texts if re.search(r"\bSTUDY(\.md|\s+\d)", (ROOT / p).read_text())}
    assert not pointers, sorted(pointers)
    readme = (ROOT / "README.md").read_text()
    assert not re.search(r"\b(commit|clone of|at) [0-9a-f]{7,40}\b", readme)
    assert len(readme.splitlines()) <= 250


def test_wall_time_is_the_union_of_the_jobs_intervals(tmp_path):
    """Two replicates' jobs overlap; a pooled job rerun an hour later adds its own seconds only."""
    bench = tmp_path / "benchmarks"
    jobs = {"finetune/rep0_target.tsv": (100, 160), "finetune/rep1_target.tsv": (130, 200),
            "unlearn/rep0_ga_mrd.tsv": (200, 260), "report.tsv": (3860, 3870)}
    for name, (start, end) in jobs.items():
        path = bench / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"s": [end - start], "max_rss": [1.0]}).to_csv(path, sep="\t", index=False)
        os.utime(path, (end, end))
    times = snapshot.run_times(tmp_path)
    assert times["wall_s"] == pytest.approx(100 + 60 + 10)  # [100, 200] + [200, 260] + [3860, 3870]
    assert times["replicates"] == 2 and times["wall_s_per_replicate"] == pytest.approx(85)
    assert times["job_s_per_replicate"] == {"0": 120.0, "1": 70.0} and times["job_s_shared"] == 10.0


def test_a_study_that_has_not_run_gets_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mrd_unlearning.snapshot", "--config", str(ROOT / "config/smoke.yaml"),
                           "--results", str(tmp_path), "--out", str(tmp_path / "snap")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and str(tmp_path / "smoke") in done.stderr
    assert not (tmp_path / "snap").exists()


@pytest.mark.e2e
def test_make_snapshot_on_a_finished_study(smoke_run, tmp_path):
    work, out, _ = smoke_run
    readme = tmp_path / "README.md"
    readme.write_text(f"# A\n\n{snapshot.BEGIN}\nold\n{snapshot.END}\n\nrest\n")
    done = subprocess.run([sys.executable, "-m", "mrd_unlearning.snapshot", "--config", "config/smoke.yaml",
                           "--out", str(tmp_path / "snap"), "--readme", str(readme), "--simulations", "4",
                           "--readme-studies", "smoke"],
                          capture_output=True, text=True, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    snap = tmp_path / "snap" / "smoke"
    assert (snap / "verdicts.csv").read_bytes() == (out / "tables/verdicts.csv").read_bytes()
    assert (snap / "metrics.json").read_bytes() == (out / "metrics.json").read_bytes()
    run = json.loads((snap / "run.json").read_text())
    assert run["replicates"] == 2 and set(run["detectable"]) >= {"C1", "C2", "C3", "C4"}
    assert 0 < run["wall_s"] <= sum(run["job_s_per_replicate"].values()) + run["job_s_shared"] + 1
    assert run["record"] == json.loads((out / "run.json").read_text())
    assert run["record"]["code"] == provenance.rule_identities(work)
    assert {"unlearn", "mrd", "ground_truth", "verdicts", "calibration"} <= set(run["feeds"])  # the verdicts' DAG
    assert not {"report", "samples_page", "run_record", "all"} & set(run["feeds"])  # rendering only
    timing = pd.read_csv(snap / "timing.csv")
    assert timing.rule.iloc[-1] == "total" and timing.jobs.iloc[-1] == len(list((out / "benchmarks").rglob("*.tsv")))
    page = (tmp_path / "snap" / "smoke.md").read_text()
    text = readme.read_text()
    assert text.startswith("# A\n\n") and text.endswith("\n\nrest\n") and "old" not in text
    for claim, verdict in pd.read_csv(snap / "verdicts.csv")[["claim", "verdict"]].itertuples(index=False):
        assert f"**{verdict}**" in page and f"**{verdict}**" in text, claim


# `make docs` installs the package without its dependencies (no torch), and only what its recipe
# names. Its steps are run here where nothing else imports: the standard library, the package, and
# the distributions the Makefile's docs recipe installs with everything they require.
@functools.cache
def docs_environment_modules() -> list[str]:
    import importlib.metadata as metadata

    from packaging.requirements import Requirement

    recipe = (ROOT / "Makefile").read_text().split("$(DOCS_VENV)/.installed:", 1)[1].split("\n\n", 1)[0]
    named = [word.strip('"') for line in recipe.replace("\\\n", " ").splitlines() if "pip install" in line
             for word in line.split("pip install", 1)[1].split() if not word.startswith("-") and word != "."]
    assert "mkdocs-material>=9.5" in named and not any(w.startswith(("torch", "transformers")) for w in named), named
    wanted, todo = set(), [Requirement(w).name for w in named]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in wanted:
            continue
        wanted.add(name)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        todo += [r.name for r in map(Requirement, requires) if r.marker is None or r.marker.evaluate({"extra": ""})]
    modules = {module for module, dists in metadata.packages_distributions().items()
               if any(d.lower().replace("_", "-") in wanted for d in dists)}
    return sorted(modules | {"mrd_unlearning"})


ONLY_THE_DOCS_ENVIRONMENT = """
import importlib.machinery, json, os, runpy, sys, sysconfig
allowed = set(json.loads(os.environ["DOCS_MODULES"])) | set(sys.stdlib_module_names) | set(sys.modules)
stdlib = [sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")]
class Refuse:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in allowed:
            return None
        spec = importlib.machinery.PathFinder.find_spec(top)  # the interpreter's own (e.g. _sysconfigdata_*)
        if spec is not None and spec.origin and spec.origin.startswith(tuple(stdlib)) and "site-packages" not in spec.origin:
            return None
        raise ModuleNotFoundError(f"No module named {name!r}: not in the docs environment", name=name)
sys.meta_path.insert(0, Refuse())
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def docs_step(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DOCS_MODULES": json.dumps(docs_environment_modules())}
    return subprocess.run([sys.executable, "-c", ONLY_THE_DOCS_ENVIRONMENT, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The documentation site, built as `make docs` builds it (strict: a broken link, a page outside
    the nav or an API reference that does not resolve fails)."""
    site = tmp_path_factory.mktemp("docs") / "site"
    done = docs_step("mkdocs", "build", "--strict", "--site-dir", str(site))
    assert done.returncode == 0, done.stderr[-3000:]
    return site


def test_the_docs_steps_need_nothing_the_docs_environment_lacks():
    """The snapshot check `make docs` runs first works there; the refusal itself is real."""
    done = docs_step("mrd_unlearning.snapshot", "--check")
    assert done.returncode == 0, done.stderr[-3000:]
    refused = docs_step("mrd_unlearning.models")  # the models need torch
    assert refused.returncode != 0 and "not in the docs environment" in refused.stderr, refused.stderr[-2000:]


@pytest.mark.e2e
def test_the_documentation_builds_strictly_offline(site):
    results = [f"results/{study}.html" for study in snapshot.snapshots(ROOT / "docs" / "results")]
    assert {"results/default.html", "results/tofu_smollm2.html"} <= set(results)
    for page in ("index.html", "method.html", *results, "api.html",
                 "your-data.html"):  # offline: one .html file per page, readable from the file system
        assert (site / page).is_file(), page
    assert "MRDWeightedTrainer" in (site / "your-data.html").read_text()  # the README's section, included
    for page in results:  # nine columns: the page's width is theirs
        assert 'data-md-type="toc" hidden>' in (site / page).read_text(), page
    assert 'data-md-type="toc" hidden>' not in (site / "method.html").read_text()
    assert "score_mrd" in (site / "api.html").read_text()
    assert "mrd.sigma" in (site / "configuration.html").read_text()


# Each table's width against the width of the sideways-scrolling box the theme's script puts it in
# (after the page loaded), as the browser lays the page out.
TABLE_WIDTHS = """<script>
window.addEventListener("load", () => setTimeout(() => {
  document.body.dataset.tables = [...document.querySelectorAll(".md-typeset table")].map(t => {
    const box = t.closest(".md-typeset__scrollwrap");
    return t.scrollWidth + "/" + (box ? box.clientWidth : -1);
  }).join(" ");
}, 500));
</script></body>"""


@pytest.mark.e2e
@needs_browser
def test_the_results_pages_show_every_column_of_their_tables_in_a_1400_pixel_window(site):
    """Nine-column verdict tables fit the page at 1400 px, nothing scrolled out of sight; with the
    theme's default layout (no wide-tables stylesheet) the verdict table overflows its box."""
    for name in snapshot.snapshots(ROOT / "docs" / "results"):
        page = site / "results" / f"{name}.html"
        html = page.read_text()
        assert "wide-tables.css" in html
        for variant, text in (("as built", html), ("without the stylesheet", re.sub(r'<link[^>]*wide-tables[^>]*>', "",
                                                                                       html))):
            measured = page.with_name(f"{name}.measured.html")
            measured.write_text(text.replace("</body>", TABLE_WIDTHS, 1))
            dom = rendered_dom(f"file://{measured}", width=1400, timers_ms=5000)
            widths = [tuple(map(int, w.split("/"))) for w in re.search(r'data-tables="([^"]*)"', dom).group(1).split()]
            assert len(widths) >= 3 and all(box > 0 for _, box in widths), (name, widths)  # inside the theme's boxes
            (table, box), *_ = widths
            if variant == "as built":
                assert all(t <= b for t, b in widths), (name, variant, widths)
            else:  # the test can fail: the theme alone gives the verdicts less room than they need
                assert table > box, (name, variant, widths)


@pytest.mark.e2e
def test_no_snapshot_of_results_the_checkout_would_rerun(smoke_run, tmp_path):
    """Results of another configuration (or older code) than the checkout's are refused with the
    jobs Snakemake would run, and nothing is written; so are outputs without Snakemake's record of
    the code that made them."""
    work = tmp_path / "project"  # its own copy (times kept): the smoke run's is shared by the session's tests
    shutil.copytree(smoke_run[0], work, symlinks=True)
    text = (work / "config" / "smoke.yaml").read_text()
    assert "steps: 4," in text
    (work / "config" / "stale.yaml").write_text(text.replace("steps: 4,", "steps: 3,"))
    done = subprocess.run([sys.executable, "-m", "mrd_unlearning.snapshot", "--config", "config/stale.yaml",
                           "--out", str(tmp_path / "snap"), "--readme", str(tmp_path / "README.md"),
                           "--simulations", "4"], capture_output=True, text=True, cwd=work)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0
    assert "Snakemake would still run" in done.stderr and "unlearn (8)" in done.stderr and "all (" not in done.stderr
    assert not (tmp_path / "snap").exists()
    shutil.rmtree(work / ".snakemake" / "metadata")  # outputs without Snakemake's record of their code
    done = subprocess.run([sys.executable, "-m", "mrd_unlearning.snapshot", "--config", "config/smoke.yaml",
                           "--out", str(tmp_path / "snap"), "--readme", str(tmp_path / "README.md"),
                           "--simulations", "4"], capture_output=True, text=True, cwd=work)
    assert done.returncode == 2 and "has no record of the code" in done.stderr, done.stderr[-2000:]
    assert "Rules with missing metadata:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "snap").exists()


def test_the_citation_file_names_every_author_in_full_and_the_packages_version():
    """CITATION.cff (GitHub's "Cite this repository") and the README's BibTeX name the paper's six
    authors with given names; the file's version is the package's."""
    from importlib.metadata import version

    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["title"] and cff["authors"]
    assert cff["version"] == version("mrd-unlearning")
    (paper,) = cff["references"]
    names = [f"{a['family-names']}, {a['given-names']}" for a in paper["authors"]]
    assert len(names) == 6 and all(a["given-names"] for a in paper["authors"])
    assert " and ".join(names) in (ROOT / "README.md").read_text()


def test_the_attacks_cell_reads_the_longest_relearning_from_metrics():
    """The README's attacks row: the comparison's verdict and the recovery beyond control after the
    largest relearning budget with its interval; a snapshot from before the attacks says so."""
    metrics = {"verdict_robustness": "inconclusive",
               **{f"recovery_beyond_control_relearn@{b}{s}": v + b / 100 for b in (5, 20, 10)
                  for s, v in (("", 0.3), ("_ci_low", 0.1), ("_ci_high", 0.5))}}
    cell = snapshot._robustness_cell(metrics)
    assert cell == "**inconclusive**: recovery beyond control after 20 relearning updates 0.50 [0.30, 0.70]"
    assert snapshot._robustness_cell({}).startswith("not in this snapshot")


def test_the_primary_comparisons_cell_says_what_its_seed_pairs_detect():
    """Beside the seeds per model its smallest effects need, the cell says which multiple of them
    the run's own seed pairs detect (the plan's `primary detectable`), or that they detect none."""
    verdicts = pd.DataFrame({"claim": ["C4", "C4a", "C4b"]})
    planned = {"C4b primary seeds needed": None, "C4b primary detectable": 6.1,
               "C4a primary seeds needed": 5, "C4a primary detectable": None}
    snap = {"verdicts": verdicts, "run": {"detectable": planned}}
    assert snapshot._detectable(snap, "C4b") == ("its smallest effects need more than 40 seeds per model; "
                                                 "its seed pairs detect 6.1 x them")
    assert snapshot._detectable(snap, "C4a").endswith("need 5 seeds per model; its seed pairs do not detect 20 x them")
    assert snapshot._detectable(snap, "C4") == "not planned in this snapshot"
    few = {"verdicts": verdicts, "run": {"detectable": {"C4b primary seeds needed": 9,
                                                         "C4b primary detectable": snapshot.UNREACHABLE}}}
    assert snapshot._detectable(few, "C4b").endswith("its seed pairs cannot detect an effect of any size")
    # the renderer cannot import calibration (the docs' environment has no scipy): its numbers are the plan's
    from mrd_unlearning.calibration import PRIMARY_MULTIPLES, seeds_needed
    assert f"detect {PRIMARY_MULTIPLES[-1]} x" in snapshot._detectable(snap, "C4a")
    assert f"more than {inspect.signature(seeds_needed).parameters['most'].default} seeds" in snapshot._detectable(snap, "C4b")
    older = {"verdicts": verdicts, "run": {"detectable": {"C4b primary seeds needed": None}}}  # planned before the multiple
    assert snapshot._detectable(older, "C4b") == "its smallest effects need more than 40 seeds per model"
