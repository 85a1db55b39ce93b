"""Committed snapshots of finished studies, and everything the README and the docs render from them.

    python -m mrd_unlearning.snapshot --config config/tofu_smollm2.yaml   # make snapshot CONFIG=...
    python -m mrd_unlearning.snapshot --render                             # README + docs, from the snapshots

    python -m mrd_unlearning.snapshot --check                              # which snapshots trail the code

A snapshot, docs/results/<study>/, is a few kilobytes taken from a finished run: its verdicts
(tables/verdicts.csv), metrics.json, the calibration and C4-unit tables, what the design can detect
(the power plan, with the run's own variance components), the time per rule (`make timing`'s
table), the run's wall time per replicate, the rules that feed the copied files, and the study's run record (results/<study>/run.json:
commit, config hash, each rule's code identity as run, the jobs' machines and libraries). A
snapshot is taken only of results the checkout's code produced (Snakemake plans no job for the
study). The README's results table and each docs/results/<study>.md are rendered from snapshots
alone and state frozen facts (what ran, when, where, at which commit), so they do not change
when the code does; whether a snapshot trails the code is computed by `--check` (and `make
docs`), which names the rules feeding the snapshot's files (recorded when it is taken) whose code
identity changed since its run: an edit to the report's wording or its figures stales none.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .config import ConfigError, study_config, study_data_configs
from .io import atomic_path, read_json, write_json
from .jobs import STUDY_OUTPUTS
from .provenance import rule_identities
from .timing import benchmark_table
from .wording import counted

SNAPSHOTS = Path("docs/results")
README = Path("README.md")
COPIED = {"metrics.json": "metrics.json", "tables/verdicts.csv": "verdicts.csv",
          "tables/calibration.csv": "calibration.csv", "tables/c4_unit.csv": "c4_unit.csv"}
# The README's results table, between these markers, is rewritten by --render and checked by the tests.
BEGIN = "<!-- results: rendered from docs/results/ by `make snapshot`; edits here are overwritten -->"
END = "<!-- end of results -->"
README_STUDIES = ("default", "tofu_smollm2")  # the studies the README's table shows, in its order (--readme-studies)


# --- taking a snapshot -------------------------------------------------------------------------------

def run_times(results_dir: str | Path) -> dict:
    """The run's wall time, from its benchmark files: each job ran from (file time - its seconds)
    to the file time; the study's wall time is the union of those intervals, so a later rerun of
    a few pooled jobs adds only their own seconds, not the hours between."""
    root = Path(results_dir) / "benchmarks"
    jobs = []
    for path in sorted(root.rglob("*.tsv")):
        seconds = float(pd.read_csv(path, sep="\t").s.iloc[-1])
        match = re.search(r"rep(\d+)", path.relative_to(root).as_posix())
        jobs.append((path.stat().st_mtime - seconds, path.stat().st_mtime, int(match[1]) if match else None))
    if not jobs:
        raise FileNotFoundError(f"no benchmark files under {root}: has the study run?")

    def union(intervals) -> float:
        total, end = 0.0, -np.inf
        for lo, hi in sorted(intervals):
            if hi > end:
                total += hi - max(lo, end)
                end = hi
        return total

    replicates = sorted({r for *_, r in jobs if r is not None})
    wall = union([(lo, hi) for lo, hi, _ in jobs])
    return {"wall_s": round(wall, 1), "replicates": len(replicates),
            "wall_s_per_replicate": round(wall / max(len(replicates), 1), 1),
            "job_s_per_replicate": {str(r): round(sum(hi - lo for lo, hi, rep in jobs if rep == r), 1)
                                    for r in replicates},
            "job_s_shared": round(sum(hi - lo for lo, hi, rep in jobs if rep is None), 1)}


UNRECORDED = ("missing provenance/metadata", "outdated provenance/metadata")


def _config_files(config) -> list[str]:
    """One configuration file or several (`--config a.yaml b.yaml`), as a list."""
    return [str(config)] if isinstance(config, (str, Path)) else [str(c) for c in config]


def config_argument(config) -> str:
    """The configuration file(s) as `make ... CONFIG=` takes them (quoted when several)."""
    files = _config_files(config)
    return files[0] if len(files) == 1 else '"' + " ".join(files) + '"'


def pending_jobs(config: str | Path, study: str) -> dict[str, int]:
    """Rule -> jobs Snakemake would still run for the study's outputs (a dry run): none when they
    are those of the checkout's code, configuration and inputs. Outputs Snakemake has no record of
    (copied in, or a record from an older Snakemake) cannot be checked, so they are refused too."""
    out = _dry_run(config, [f"results/{study}/{name}" for name in STUDY_OUTPUTS])
    if any(marker in out for marker in UNRECORDED):
        unrecorded = [line for line in out.splitlines() if line.startswith("Rules with ") and "metadata:" in line]
        raise ConfigError(f"results/{study}: Snakemake has no record of the code and params of some outputs "
                          f"({'; '.join(unrecorded) or 'see snakemake --dry-run'}), so it cannot tell whether they "
                          f"are current; rerun the study, or add --no-check-current")
    return dry_run_jobs(out)


def feeding_rules(config: str | Path, study: str) -> list[str]:
    """The rules whose jobs make the files a snapshot copies (a dry run that forces every job
    upstream of them): the ones whose code can make a snapshot trail it. The report, its figures
    and the samples page render from those files and change none of them."""
    out = _dry_run(config, [f"results/{study}/{name}" for name in COPIED], "--forceall")
    return sorted(dry_run_jobs(out))


def _dry_run(config: str | Path, targets: list[str], *flags: str) -> str:
    """A Snakemake dry run's console output for `targets`, or a one-line error."""
    done = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", *_config_files(config), "--cores", "1",
                           "--dry-run", *flags, *targets], capture_output=True, text=True)
    out = done.stdout + done.stderr
    if done.returncode != 0:
        last = out.strip().splitlines()[-1] if out.strip() else f"exit status {done.returncode}"
        raise ConfigError(f"{config_argument(config)}: snakemake --dry-run failed: {last}")
    return out


def dry_run_jobs(out: str) -> dict[str, int]:
    """Rule -> job count from a Snakemake dry run's console output (its "Job stats" table)."""
    if "Nothing to be done" in out:
        return {}
    if "Job stats:" not in out:
        raise ConfigError("a Snakemake dry run printed neither a job table nor 'Nothing to be done': "
                          "run it without --quiet")
    table = out.split("Job stats:", 1)[1].split("total", 1)[0].splitlines()
    return {parts[0]: int(parts[1]) for parts in (line.split() for line in table)
            if len(parts) == 2 and parts[1].isdigit()}


def take(config: str | Path, cfg: dict, study: str, data_cfg: dict, *, results: str | Path = "results",
         out: str | Path = SNAPSHOTS, simulations: int = 40, check_current: bool = True) -> Path:
    """Snapshot results/<study> into out/<study>/ (replaced whole, atomically); `cfg` is the
    validated configuration read from `config`. Refused while Snakemake would still run a job of
    the study (`check_current`; the dry run plans the workflow's own results/ folder)."""
    from .plan import power_section

    source = Path(results) / study
    missing = [name for name in (*COPIED, "run.json", "benchmarks") if not (source / name).exists()]
    if missing:
        raise ConfigError(f"{source}: no {', '.join(missing)}; run the study first (make reproduce CONFIG={config_argument(config)})")
    if check_current and Path(results).resolve() != Path("results").resolve():
        raise ConfigError(f"--results {results}: Snakemake can tell whether results are current only in the "
                          "workflow's own results/; add --no-check-current to snapshot them anyway")
    pending = pending_jobs(config, study) if check_current else {}
    if pending:
        jobs = ", ".join(f"{rule} ({n})" for rule, n in pending.items() if rule != "all") or "its final jobs"
        raise ConfigError(f"{source}: not the results of this checkout; Snakemake would still run {jobs}: "
                          f"run the study first (make reproduce CONFIG={config_argument(config)})")
    feeds = feeding_rules(config, study)
    _, detectable = power_section(cfg, study, data_cfg, simulations=simulations, results=results)
    with atomic_path(Path(out) / study) as tmp:
        tmp.mkdir()
        for name, target in COPIED.items():
            shutil.copy(source / name, tmp / target)
        benchmark_table(source).to_csv(tmp / "timing.csv", index=False, float_format="%.1f")
        own = own_evaluation(source, cfg["replicates"])
        if own:
            write_json(tmp / "benchmark.json", own)
        write_json(tmp / "run.json", {"study": study, "config": config_argument(config), **run_times(source),
                                      "detectable": detectable, "plan_simulations": simulations,
                                      "feeds": feeds, "record": read_json(source / "run.json")})
    return Path(out) / study


def own_evaluation(source: Path, replicates: list[int]) -> dict:
    """A benchmark study's own metrics (MUSE, WMDP, WHP), read from the configured replicates'
    evaluations and the unlearning table as its report reads them; {} for a study of other data."""
    from .report import benchmark_metrics

    evals = {r: {f"{role}_eval": read_json(source / f"eval/rep{r}/{role}.json") for role in ("target", "retain")}
             for r in replicates}
    return benchmark_metrics(evals, pd.read_csv(source / "tables" / "unlearning.csv"))


# --- rendering ---------------------------------------------------------------------------------------

def load(folder: str | Path) -> dict:
    folder = Path(folder)
    return {"study": folder.name, "verdicts": pd.read_csv(folder / "verdicts.csv"),
            "calibration": pd.read_csv(folder / "calibration.csv"), "c4_unit": pd.read_csv(folder / "c4_unit.csv"),
            "timing": pd.read_csv(folder / "timing.csv"), "run": json.loads((folder / "run.json").read_text()),
            "metrics": json.loads((folder / "metrics.json").read_text()),
            "benchmark": read_json(folder / "benchmark.json") if (folder / "benchmark.json").is_file() else {}}


def _num(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if np.isinf(value):
        return "unbounded"
    return f"{value:.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"


def _estimate(r) -> str:
    """'rho of MRD 0.01 [-0.22, 0.25]', with Holm's p where the claim tests a family."""
    short = r.short if isinstance(r.short, str) else ""  # an empty CSV cell reads as NaN
    text = f"{short} {_num(r.estimate)} [{_num(r.ci_low)}, {_num(r.ci_high)}]" if short else r.statistic
    return text + (f", Holm p {r.p_holm:.2g}" if np.isfinite(r.p_holm) else "")


def _primary(snap: dict, claim: str) -> bool:
    """Whether a verdict row is C4's primary comparison (C4, C4a, C4b where the parts were answered)."""
    return claim in ("C4a", "C4b") or (claim == "C4" and "C4a" in set(snap["verdicts"].claim))


# The plan's `<part> primary detectable` where the seed pairs' exact tests cannot reach the rule's levels
UNREACHABLE = "none of any size"


def _detectable(snap: dict, claim: str) -> str:
    """The plan's smallest effect detected with 80% power, in the claim's own unit."""
    if _primary(snap, claim):  # the primary comparison: the seeds per model its plan asks for 80% power
        planned = snap["run"]["detectable"]
        seeds = planned.get(f"{claim} primary seeds needed", "unplanned")
        if seeds == "unplanned":
            return "not planned in this snapshot"
        text = f"its smallest effects need {'more than 40' if seeds is None else seeds} seeds per model"
        if f"{claim} primary detectable" not in planned:  # a snapshot from before the multiple was planned
            return text
        multiple = planned[f"{claim} primary detectable"]
        return text + ("; its seed pairs cannot detect an effect of any size" if multiple == UNREACHABLE else
                       "; its seed pairs do not detect 20 x them" if multiple is None else
                       f"; its seed pairs detect {multiple:.2g} x them")
    claim = claim.split("-")[0]  # C1 and C2 on SGD's ground truth: the same rule and plan
    value = snap["run"]["detectable"].get(claim)
    if value is None:
        return "none within the plan's grid"
    return {"C1": f"spread {value:.2g}", "C2": f"rho {value:.2g}", "C3": f"rho {value:.2g}"}.get(
        claim, f"{value:.3g} x the paper's gains")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def stale_rules(snap: dict, workflow_dir: str | Path = ".") -> list[str] | None:
    """The rules feeding the snapshot's files whose code identity now differs from the one its
    run recorded (a rule added since counts where it now feeds a rule that did: that rule's
    definition changed with it); None where the run recorded none (a snapshot taken before run
    records)."""
    recorded = snap["run"].get("record", {}).get("code")
    if recorded is None:
        return None
    current = rule_identities(workflow_dir)
    feeds = set(snap["run"].get("feeds", set(recorded) | set(current)))
    return sorted(rule for rule in feeds if recorded.get(rule) != current.get(rule))


def check(root: str | Path = SNAPSHOTS, workflow_dir: str | Path = ".") -> list[str]:
    """A warning per snapshot that trails the code, naming the rules changed since its run."""
    warnings = []
    for study, snap in snapshots(root).items():
        stale = stale_rules(snap, workflow_dir)
        refresh = f"rerun, then `make snapshot CONFIG={snap['run']['config']}`"
        if stale is None:
            warnings.append(f"{Path(root) / study}: taken before run records, so every rule counts as changed since its run "
                            f"({refresh})")
        elif stale:
            warnings.append(f"{Path(root) / study}: the code of {len(stale)} rule(s) feeding it changed since its run: "
                            f"{', '.join(stale)} ({refresh})")
    return warnings


def _machines(run: dict) -> list[dict]:
    """The machines the jobs ran on (the run record's); a snapshot taken before run records has
    only the machine where the snapshot was taken."""
    return run["record"]["machines"] if "record" in run else [run["machine"]]


def _when(run: dict) -> str:
    return run["record"]["recorded"][:10] if "record" in run else run["machine"]["date"]


def _configuration(files: list[str]) -> str:
    """Snakemake lists the command line's files, then the Snakefile's own: the base they overlay."""
    *overlays, base = files
    overlays = [f for f in dict.fromkeys(overlays) if f != base]
    return f"{', '.join(overlays)} over {base}" if overlays else base


def run_facts(run: dict) -> str:
    """What ran, when, where, at which commit: facts frozen with the snapshot."""
    machines = "; ".join(f"{m['cpu']}, {counted(m['cores'], 'core')}, {m['memory_gib']} GiB"
                         + (f", {', '.join(m['gpus'])}" if m["gpus"] else ", no GPU")
                         + f", Python {m['python']}, torch {m['torch']}" + (f" ({m['jobs']} jobs)" if "jobs" in m else "")
                         for m in _machines(run))
    if "record" not in run:
        return (f"Snapshot of {_when(run)}, taken before studies kept a run record: the commit, the configuration's "
                f"hash and the jobs' own machines were not recorded; the machine is where the snapshot was taken: "
                f"{machines}.")
    r = run["record"]
    tree = {True: " with uncommitted changes", False: "", None: ""}[r["dirty"]]
    commit = f"commit `{r['commit'][:12]}`{tree}" if r["commit"] else "a tree outside git"
    return (f"Run record of {_when(run)}: {commit}, configuration {_configuration(r['config_files'])} (content hash "
            f"`{r['config_hash']}`), {r['jobs']} jobs on: {machines}.{_job_commits(r)}")


def _job_commits(record: dict) -> str:
    """Jobs that ran at other commits than the record's (a rerun of some rules keeps the others'
    outputs): where each job ran, so the record's commit is not read as every job's."""
    commits = record.get("job_commits", {})
    if not commits or list(commits) == [record["commit"]]:
        return ""
    most_first = sorted(commits.items(), key=lambda kv: -kv[1])
    return " The jobs ran at " + ", ".join(f"{_short_commit(c)} ({counted(n, 'job')})" for c, n in most_first) + "."


def _short_commit(key: str) -> str:
    """A job record's commit key ('<sha>', '<sha> (dirty)' or 'outside git') with the sha shortened."""
    sha, _, rest = key.partition(" ")
    return (f"`{sha[:12]}`" + (f" {rest}" if rest else "")) if len(sha) == 40 else key


def readme_table(snaps: list[dict]) -> str:
    """The README's results: each claim's pooled verdict per study with the statistic it reads,
    its 95% CI and the effect the design could detect (80% power at Holm's level)."""
    head = "| claim | " + " | ".join(f"`{s['study']}`" for s in snaps) + " |\n|---|" + "---|" * len(snaps) + "\n"
    rows = []
    parts = [c for c in ("C4a", "C4b", "C1-SGD", "C2-SGD") if any(c in set(s["verdicts"].claim) for s in snaps)]
    for claim in ("C1", "C2", "C3", "C4", *parts):
        cells, text = [], ""
        for s in snaps:
            table = s["verdicts"].set_index("claim")
            if claim not in table.index:  # a snapshot from before C4 was split into its primary parts
                cells.append("not in this snapshot (run before this row was answered)")
                continue
            r = table.loc[claim]
            text = r.claim_text
            scope = f" ({r.scope})" if isinstance(r.scope, str) and r.scope else ""
            planned = _detectable(s, claim)
            detectable = (f"; detectable {planned}" if not _primary(s, claim) else
                          f"; power {r.power:.0%} at its smallest effects; {planned}" if planned.startswith("not ") else
                          f"; power {r.power:.0%} at its smallest effects; at 80% power, {planned}")
            cells.append(f"**{r.verdict}**{scope}: {_estimate(r)}{detectable}")
        rows.append(f"| {text} | " + " | ".join(cells) + " |")
    rows.append("| (attacks) MRD weighting leaves forgetting less robust than uniform sampling | "
                + " | ".join(_robustness_cell(s["metrics"]) for s in snaps) + " |")
    runs = "; ".join(f"`{s['study']}`: {counted(s['run']['replicates'], 'replicate')}, "
                     f"{_minutes(s['run']['wall_s_per_replicate'])}"
                     f" per replicate on {counted(_machines(s['run'])[0]['cores'], 'core')} ({_machines(s['run'])[0]['cpu']}), "
                     f"run of {_when(s['run'])}" for s in snaps)
    return (head + "\n".join(rows) + "\n\n"
            f"Each cell: the pooled verdict, the statistic it reads with its 95% CI, and the smallest effect the "
            f"design detects with 80% power (`make plan`). Wall time: {runs}.\n")


def _robustness_cell(metrics: dict) -> str:
    """The attacks' answer in one cell: the MRD-vs-uniform verdict and how much of what unlearning
    removed the longest relearning brings back beyond its control (every run, mean [95% CI])."""
    if "verdict_robustness" not in metrics:
        return "not in this snapshot (run before the attacks were part of every study)"
    longest = max((k for k in metrics if re.fullmatch(r"recovery_beyond_control_relearn@\d+", k)),
                  key=lambda k: int(k.rsplit("@", 1)[1]), default=None)
    if longest is None:
        return f"**{metrics['verdict_robustness']}**"
    budget = longest.rsplit("@", 1)[1]
    return (f"**{metrics['verdict_robustness']}**: recovery beyond control after {budget} relearning updates "
            f"{_num(metrics[longest])} [{_num(metrics[longest + '_ci_low'])}, {_num(metrics[longest + '_ci_high'])}]")


def _benchmark_section(own: dict | None) -> list[str]:
    """A benchmark's study: the benchmark's own metrics of each model, as its report gives them."""
    if not own:
        return []
    columns = [c for c in own["models"][0] if c != "model"]
    lines = ["", f"## {own['name']}'s own metrics", "",
             "Each model scored on the benchmark's published evaluation sets with its own prompts and metrics (the "
             f"unlearned models after the budget). What of the benchmark this study lacks: {own['not_run']}", "",
             "| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for row in own["models"]:
        lines.append(f"| {row['model']} | " + " | ".join(_num(row[c]) for c in columns) + " |")
    return lines


def study_page(snap: dict) -> str:
    """docs/results/<study>.md."""
    verdicts, run = snap["verdicts"], snap["run"]
    lines = ["---", "hide: [toc]  # the nine-column tables need the width", "---", "",
             f"# Results: `{snap['study']}`", "",
             f"Rendered from the snapshot in `docs/results/{snap['study']}/` (taken by `make snapshot "
             f"CONFIG={run['config']}` from the finished run); the full report is the run's `results/{snap['study']}/"
             "report.md`.", "", "## Verdicts", "",
             "| claim | verdict | per replicate | statistic | estimate [95% CI] | Holm p | false verdicts under no "
             "effect [95% upper] | power at the smallest effect | detectable (80% power) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in verdicts.itertuples():
        scope = f" ({r.scope})" if isinstance(r.scope, str) and r.scope else ""
        false = f"{r.false_verdict_rate:.1%} [{r.false_verdict_upper95:.1%}]" if np.isfinite(r.false_verdict_rate) else ""
        power = f"{r.power:.0%} at {r.smallest_effect}" if np.isfinite(r.power) else ""
        holm = f"{r.p_holm:.2g}" if np.isfinite(r.p_holm) else ""
        lines.append(f"| {r.claim_text} | **{r.verdict}**{scope} | {r.per_replicate} | {r.statistic} | "
                     f"{_num(r.estimate)} [{_num(r.ci_low)}, {_num(r.ci_high)}] | {holm} | {false} | {power} | "
                     f"{_detectable(snap, r.claim)} |")
    lines += ["", f"Attacks after the budget (relearning, quantization): {_robustness_cell(snap['metrics'])}; "
              "the run's report gives every attack, tier and control."]
    lines += _benchmark_section(snap.get("benchmark"))
    unit = snap["c4_unit"]
    chosen = unit[unit.chosen.astype(bool)].iloc[0]
    lines += ["", "## C4's unit", "",
              f"The run pairs' share of the groups' paired differences: {_num(chosen.run_share)} "
              f"[{_num(chosen.run_share_ci_low)}, {_num(chosen.run_share_ci_high)}]. Simulated at "
              f"{_num(chosen.run_share_assumed)} ({chosen.run_share_source}), at Holm's level {chosen.level:.3g}:", "",
              "| unit | units | false rejections [95% upper] | power | chosen |", "|---|---|---|---|---|"]
    for r in unit.itertuples():
        lines.append(f"| {r.unit} | {r.n_units} | {r.false_rejection_rate:.1%} [{r.false_rejection_upper95:.1%}] | "
                     f"{r.power:.0%} | {'yes' if r.chosen else ''} |")
    cal = snap["calibration"]
    lines += ["", "## Calibration of the verdict rules on this design", "", f"Design: {cal.design.iloc[0]}.", "",
              "| claim | condition | effect | simulations | false verdicts [95% upper] | power |",
              "|---|---|---|---|---|---|"]
    for r in cal.itertuples():
        false = f"{r.false_verdict_rate:.1%} [{r.false_verdict_upper95:.1%}]" if np.isfinite(r.false_verdict_rate) else ""
        power = f"{r.power:.0%}" if np.isfinite(r.power) else ""
        lines.append(f"| {r.claim} | {r.condition} | {r.effect} | {r.simulations} | {false} | {power} |")
    per_rep = ", ".join(f"replicate {k}: {_minutes(v)}" for k, v in run["job_s_per_replicate"].items())
    lines += ["", "## Cost", "",
              f"Wall time {_minutes(run['wall_s'])} for {counted(run['replicates'], 'replicate')}, "
              f"{_minutes(run['wall_s_per_replicate'])} per replicate (the time in which any job ran, from the "
              f"benchmark files). Summed job time (jobs ran side by side): {per_rep}; pooled stages {_minutes(run['job_s_shared'])}. "
              + run_facts(run), "",
              "| rule | jobs | total s | longest s | peak memory MB |", "|---|---|---|---|---|"]
    for r in snap["timing"].itertuples():
        lines.append(f"| {r.rule} | {r.jobs} | {r.total_s:.0f} | {r.max_s:.0f} | "
                     f"{'' if np.isnan(r.max_rss) else f'{r.max_rss:.0f}'} |")
    return "\n".join(lines) + "\n"


def snapshots(root: str | Path = SNAPSHOTS) -> dict[str, dict]:
    return {folder.name: load(folder) for folder in sorted(Path(root).iterdir())
            if folder.is_dir() and (folder / "run.json").is_file()} if Path(root).is_dir() else {}


def readme_block(snaps: dict[str, dict], studies: tuple[str, ...] = README_STUDIES) -> str:
    """The table of `studies`, then a link to every snapshot's page (the studies outside the table too)."""
    shown = [snaps[s] for s in studies if s in snaps]
    if not shown:
        return f"{BEGIN}\nNo snapshot yet: `make snapshot`.\n{END}"
    pages = ", ".join(f"[`{s}`]({SNAPSHOTS.as_posix()}/{s}.md)" for s in [*(x["study"] for x in shown),
                                                                         *sorted(set(snaps) - set(studies))])
    return f"{BEGIN}\n{readme_table(shown)}\nEach study's page (what ran, every verdict's calibration, the cost): {pages}.\n{END}"


def render(root: str | Path = SNAPSHOTS, readme: str | Path = README,
           studies: tuple[str, ...] = README_STUDIES) -> list[Path]:
    """Rewrite the README's results table and every docs/results/<study>.md from the snapshots."""
    snaps, written = snapshots(root), []
    for study, snap in snaps.items():
        page = Path(root) / f"{study}.md"
        with atomic_path(page) as tmp:
            tmp.write_text(study_page(snap))
        written.append(page)
    readme = Path(readme)
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ConfigError(f"{readme}: no results markers ({BEGIN} ... {END})")
    before, rest = text.split(BEGIN, 1)
    with atomic_path(readme) as tmp:
        tmp.write_text(before + readme_block(snaps, studies) + rest.split(END, 1)[1])
    return [*written, readme]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Snapshot finished studies into docs/results/ and render the "
                                                 "README's results table and the docs' results pages from them.")
    parser.add_argument("--config", nargs="+", help="the configuration file(s) of the study whose finished results "
                        "to snapshot (later ones merged over earlier ones, as --configfile)")
    parser.add_argument("--results", default="results", help="where the studies' results are (default: results)")
    parser.add_argument("--out", default=str(SNAPSHOTS), help="the snapshots' folder (default: docs/results)")
    parser.add_argument("--readme", default=str(README), help="the README to render into (default: README.md)")
    parser.add_argument("--simulations", type=int, default=40,
                        help="simulated studies per point of the power plan's curves (default 40, as make plan)")
    parser.add_argument("--readme-studies", default=",".join(README_STUDIES),
                        help=f"the studies the README's table shows, in order (default: {','.join(README_STUDIES)})")
    parser.add_argument("--render", action="store_true", help="only render, from the snapshots already there")
    parser.add_argument("--check", action="store_true",
                        help="only warn about snapshots whose run recorded other code identities than the checkout's "
                             "(naming the rules changed since); exits 0")
    parser.add_argument("--no-check-current", dest="check_current", action="store_false",
                        help="snapshot even if Snakemake would still run jobs of the study (e.g. with --results "
                             "elsewhere than the workflow's own results/)")
    args = parser.parse_args(argv)
    if args.check:
        for warning in check(args.out):
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    if not args.config and not args.render:
        parser.error("name --config (take snapshots, then render), --render or --check")
    if args.simulations < 1:
        parser.error("--simulations: must be at least 1")
    try:
        if args.config:
            cfg = study_config(args.config)
            for study, data_cfg in study_data_configs(cfg).items():
                folder = take(args.config, cfg, study, data_cfg, results=args.results, out=args.out,
                              simulations=args.simulations, check_current=args.check_current)
                print(f"snapshot: {folder}")
        for path in render(args.out, args.readme, tuple(args.readme_studies.split(","))):
            print(f"rendered: {path}")
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
