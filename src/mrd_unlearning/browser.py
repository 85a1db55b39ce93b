"""The per-sample browser: one static HTML page per study (results/<name>/samples.html) where a
reader sees each forget sample beside its scores, its ground truths and what every model says
to it. The tables join only by sample_id; this page does the join once, offline, no server."""
from __future__ import annotations

import json
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from .claims import GROUND_TRUTHS
from .data.loader import load_study_data
from .difficulty import SCORES, harder_when_higher
from .io import atomic_path

TEMPLATE = Path(__file__).parent / "templates" / "samples.html.j2"
TIERS = ("easy", "medium", "hard")
SHOWN_FIRST = 5  # the hardest and the easiest few, above the table
CURVE_COLOURS = ("#4c72b0", "#dd8452")  # one per ground-truth run, in the legend and the curves


def _ranks(values: pd.Series, higher_is_harder: bool) -> pd.Series:
    """1 = the sample this score calls hardest."""
    return values.rank(ascending=not higher_is_harder, method="min").astype("Int64")


def sample_rows(scores: pd.DataFrame, forget: list[dict], models: dict[str, pd.DataFrame],
                curves: dict[str, pd.DataFrame] | None = None, recovery: pd.DataFrame | None = None
                ) -> tuple[list[dict], dict]:
    """One row per forget sample: its text and group, every difficulty score and ground truth
    (mean over replicates) with its rank, its difficulty tier (thirds of the primary ground truth),
    per model its answer log-likelihood and what the model generates for it, and per ground-truth
    run (`curves`: the ground_truth rule's long tables) its likelihood after each update and the
    level it had to reach; per attack (`recovery`: tables/recovery_samples.csv) its recovery
    beyond the control on the answer log-likelihood, mean over every run where it is defined."""
    recovered = pd.DataFrame()
    if recovery is not None and len(recovery):
        loglik = recovery[recovery.measure == "loglik"]
        recovered = loglik.groupby(["sample_id", "attack"], sort=False).beyond_control.mean().unstack("attack")
        recovered = recovered[list(dict.fromkeys(loglik.attack))]
    curves = {truth: _curves(table) for truth, table in (curves or {}).items()}
    truths = [t for t in GROUND_TRUTHS if t in scores]
    primary = truths[0]
    score_columns = [s for s in SCORES if s in scores and scores[s].notna().any()]
    mean = scores.groupby("sample_id")[[*truths, *score_columns]].mean()
    censored = scores.groupby("sample_id")[[c for c in ("censored", "censored_sgd") if c in scores]].any()
    groups = scores.groupby("sample_id")["group"].first() if "group" in scores else pd.Series(dtype=str)
    low, high = np.nanpercentile(mean[primary], [100 / 3, 200 / 3])
    ranks = {c: _ranks(mean[c], harder_when_higher(c)) for c in score_columns}
    ranks.update({t: _ranks(mean[t], True) for t in truths})
    rows = []
    for sample_id, r in mean.iterrows():
        text = forget[int(sample_id)]
        tier = TIERS[0] if r[primary] <= low else TIERS[2] if r[primary] >= high else TIERS[1]
        rows.append({
            "sample_id": int(sample_id), "group": str(groups.get(sample_id, "")), "tier": tier,
            "question": text.get("question", ""), "answer": text.get("answer", text.get("text", "")),
            "values": {c: _number(r[c]) for c in [*truths, *score_columns]},
            "ranks": {c: _int(ranks[c].loc[sample_id]) for c in ranks},
            "censored": {c: bool(censored.loc[sample_id, c]) for c in censored},
            "models": {name: {"loglik": _number(table.loglik.get(sample_id)),
                              "generation": str(table.generation.get(sample_id, ""))}
                       for name, table in models.items()},
            "curves": {truth: by_sample.get(int(sample_id)) for truth, by_sample in curves.items()},
            "recovery": {a: _number(recovered[a].get(sample_id)) for a in recovered.columns},
        })
    columns = {"truths": truths, "scores": score_columns, "primary": primary, "models": list(models),
               "curves": list(curves), "recovery": list(recovered.columns), "curve_colours": dict(zip(curves, CURVE_COLOURS)),
               "tiers": {"easy": f"{primary} <= {low:.3g}", "hard": f"{primary} >= {high:.3g}"}}
    return rows, columns


def _curves(table: pd.DataFrame) -> dict[int, dict]:
    """Per sample: L after 0, 1, ... updates and the retain level. A sample the run left out
    (ground_truth.max_samples) has none."""
    return {int(sample_id): {"loglik": [float(v) for v in mine.loglik], "level": float(mine.retain_level.iloc[0])}
            for sample_id, mine in table.sort_values(["sample_id", "updates"]).groupby("sample_id")}


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _int(value) -> int | None:
    return None if pd.isna(value) else int(value)


def _forget_samples(path: str) -> pd.DataFrame:
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    return table[table.split == "forget"].set_index("sample_id")


def samples_page(scores_csv: str, data_dir: str, target_samples_csv: str, retain_samples_csv: str,
                 run_dirs: list[str], curves_csvs: list[str], out_html: str, *, name: str, replicate: int,
                 seed: int, arms: list[str], truths: list[str], recovery_samples_csv: str | None = None) -> None:
    """results/<name>/samples.html: the page, its data embedded (the models' outputs of
    `replicate`, each unlearned model's run with `seed`, after the budget: one folder of
    `run_dirs` per arm of `arms`; the likelihood curves of `replicate`'s ground-truth runs, one
    table of `curves_csvs` per ground truth of `truths`; each sample's recovery after the attacks,
    over every run, where `recovery_samples_csv` is given)."""
    models = {"target": _forget_samples(target_samples_csv), "retain": _forget_samples(retain_samples_csv)}
    for arm, folder in zip(arms, run_dirs, strict=True):
        models[arm] = _forget_samples(str(Path(folder) / f"seed{seed}" / "eval_budget_samples.csv"))
    curves = {truth: pd.read_csv(path) for truth, path in zip(truths, curves_csvs, strict=True)}
    recovery = pd.read_csv(recovery_samples_csv) if recovery_samples_csv else None
    rows, columns = sample_rows(pd.read_csv(scores_csv), load_study_data(data_dir).forget, models, curves, recovery)
    primary = columns["primary"]
    order = sorted(rows, key=lambda r: -np.inf if r["values"][primary] is None else r["values"][primary])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    data = json.dumps({"rows": rows, "columns": columns}).replace("</", "<\\/")  # safe inside <script>
    html = env.get_template(TEMPLATE.name).render(
        name=name, replicate=replicate, seed=seed, columns=columns, n=len(rows),
        hardest=order[::-1][:SHOWN_FIRST], easiest=order[:SHOWN_FIRST], data=data,
        groups=sorted({r["group"] for r in rows}, key=lambda g: (len(g), g)))
    with atomic_path(out_html) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
