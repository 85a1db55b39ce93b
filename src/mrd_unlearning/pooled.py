"""The stages that pool across replicates (what the aggregate rules call): per-sample scores of
every replicate in one table, their validation, the unlearning tables, the figures. Pure tables:
no model is loaded here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .jobs import lazy_module
from .claims import compare_samplers, completeness_metric, primary_of_runs, ranked_truths
from .data.loader import forget_groups, load_study_data
from .difficulty import LEARNING_EVENTS, difficulty_table, in_c3
from .calibration import c4_unit, calibrate, design_from_study, group_differences, run_share, smallest_effects
from .data import benchmarks
from .io import read_json, write_csv
from .validation import replicate_stability, sigma_sweep_table, validation_table, variant_column

figures = lazy_module("mrd_unlearning.figures")  # matplotlib loads only in the jobs that draw

EVALUATED = ("forget_quality", "forget_ks", "model_utility", "forget_prob", "forget_rouge", "forget_truth_ratio",
             "mia_auc", "mia_loss", "mia_zlib", "mia_min_k_pp", "mia_grad_norm", "mia_reference", "privleak")


def _factor_columns(data_dir: str) -> list[str]:
    path = Path(data_dir) / "factors.csv"
    if not path.is_file():
        return []
    return [c for c, t in pd.read_csv(path).dtypes.items() if c != "sample_id" and pd.api.types.is_numeric_dtype(t)]


def _replicate_scores(replicate: str, mrd_csv: str, counts_csvs: dict[str, str], baselines_csv: str,
                      retain_samples_csv: str, variants_csv: str | None, eps: float,
                      learning_events_csv: str | None = None) -> pd.DataFrame:
    scores = pd.read_csv(mrd_csv).merge(difficulty_table(baselines_csv, retain_samples_csv, learning_events_csv),
                                        on="sample_id")
    for truth, path in counts_csvs.items():
        counts = pd.read_csv(path)
        counts = counts[[c for c in ("sample_id", "update_count", "censored", "update_count_frac") if c in counts]]
        suffix = truth[len("update_count"):]
        scores = scores.merge(counts.rename(columns={"update_count": truth, "censored": f"censored{suffix}",
                                                     "update_count_frac": f"{truth}_frac"}), on="sample_id")
    if variants_csv:
        from .mrd import mrd_from_drop  # here, so that the other pooled jobs load no torch

        variants = pd.read_csv(variants_csv)
        named = variants[~variants.variant.str.startswith("sigma_sweep/") & (variants.variant != "main")]
        for name, group in named.groupby("variant", sort=False):
            scores[variant_column(name)] = mrd_from_drop(group.sort_values("sample_id")["drop"].to_numpy(), eps)
    scores.insert(0, "replicate", int(replicate))
    return scores


def collect_scores(replicates: dict[str, dict[str, str]], data_dir: str, out_csv: str, *, eps: float,
                   truths: list[str]) -> None:
    """mrd/scores.csv: one row per (replicate, forget sample): MRD, every ground truth, the
    variants (where measured), every other difficulty score (`difficulty.SCORES`), the sample's
    group (an author, a person; `data.loader.forget_groups`) and the known factors.
    `replicates`: r -> {mrd, baselines, retain (its per-sample evaluation), target (the model
    folder, with its learning events), each of `truths`, and variants where measured}."""
    scores = pd.concat([_replicate_scores(r, files["mrd"], {t: files[t] for t in truths}, files["baselines"],
                                          files["retain"], files.get("variants"), eps,
                                          str(Path(files["target"]) / LEARNING_EVENTS))
                        for r, files in replicates.items()], ignore_index=True)
    groups = forget_groups(load_study_data(data_dir))
    scores.insert(2, "group", [groups[i] for i in scores.sample_id])
    factors = Path(data_dir) / "factors.csv"
    if factors.is_file():
        scores = scores.merge(pd.read_csv(factors), on="sample_id", how="left")
    write_csv(out_csv, scores.sort_values(["replicate", "sample_id"]))


def _concat(paths: dict[str, str]) -> pd.DataFrame:
    """Per-replicate tables stacked, with their `replicate` first."""
    frames = [pd.read_csv(path).assign(replicate=int(r)) for r, path in paths.items()]
    table = pd.concat(frames, ignore_index=True)
    return table[["replicate", *[c for c in table.columns if c != "replicate"]]]


def mrd_validation(scores_csv: str, replicates: dict[str, dict[str, str]], data_dir: str, *, out: dict[str, str],
                   eps: float, statistics_cfg: dict) -> None:
    """tables/mrd_validation.csv (per replicate and pooled), tables/mrd_stability.csv and
    tables/mrd_sigma_sweep.csv (the replicates that ran the variant study: `replicates`, r ->
    {variants, stability}), and tables/replicate_stability.csv (does a sample keep its difficulty
    in a new training run?)."""
    variants_csvs = {r: files["variants"] for r, files in replicates.items()}
    stability_csvs = {r: files["stability"] for r, files in replicates.items()}
    scores = pd.read_csv(scores_csv)
    kw = dict(n_resamples=statistics_cfg["bootstrap_resamples"], alpha=statistics_cfg["alpha"],
              min_groups=statistics_cfg["min_groups"])
    write_csv(out["validation"], validation_table(scores, _factor_columns(data_dir), **kw))
    stability = _concat(stability_csvs)
    write_csv(out["stability"], stability)
    sweeps = [sigma_sweep_table(scores[scores.replicate == int(r)], pd.read_csv(variants_csvs[r]),
                                stability[stability.replicate == int(r)], eps).assign(replicate=int(r))
              for r in variants_csvs]
    sweep = pd.concat(sweeps, ignore_index=True)
    write_csv(out["sweep"], sweep[["replicate", *[c for c in sweep.columns if c != "replicate"]]])
    quantities = [c for c in ("update_count_frac", "update_count_sgd_frac", "update_count", "update_count_sgd", "mrd",
                              "loss", "grad_norm", "mrd_thirdparty",
                              "memorization", "entanglement", "learning_confidence") if c in scores]
    write_csv(out["replicate_stability"], replicate_stability(scores, quantities, **kw))


def unlearning_tables(run_dirs: list[str], replicates: dict[str, dict[str, str]], data_dir: str, table_csv: str,
                      curves_csv: str, authors_csv: str) -> None:
    """The unlearning runs' tables: `unlearning_table` and `author_outcomes` (`replicates`: r ->
    {retain_samples})."""
    unlearning_table(run_dirs, table_csv, curves_csv)
    author_outcomes(run_dirs, {r: files["retain_samples"] for r, files in replicates.items()}, data_dir, authors_csv)


def unlearning_table(run_dirs: list[str], out_csv: str, curves_csv: str) -> None:
    """tables/unlearning.csv (one row per replicate x algorithm x sampler x seed: the metrics after
    the budget, the efficiency measures, and the metrics at equal forgetting with the prefix
    `level_`) and tables/curves.csv (every run's curve, long)."""
    rows, curves = [], []
    for run_dir in run_dirs:
        for folder in sorted(Path(run_dir).glob("seed*")):
            run = read_json(folder / "run.json")
            key = {k: run[k] for k in ("replicate", "algorithm", "sampler", "seed")}
            curves.append(pd.read_csv(folder / "curve.csv").assign(**key))
            budget, at_level = run["eval_budget"], run["eval_level"]
            rows.append({**key, **{k: budget.get(k, float("nan")) for k in EVALUATED},
                         **{k: budget[k] for k in benchmarks.METRIC_KEYS if k in budget},
                         **{k: run[k] for k in ("steps", "steps_to_forget", "steps_censored", "forget_progress",
                                                "forget_auc", "wall_s", "refreshes", "refresh_s")},
                         **({"attack_s": run["attack_s"]} if "attack_s" in run else {}),
                         "level_step": at_level["step"], "level_reached": run["level_reached"],
                         **{f"level_{k}": at_level.get(k, float("nan"))
                            for k in ("forget_quality", "forget_ks", "forget_rouge", "model_utility")}})
    keys = ["replicate", "algorithm", "sampler", "seed"]
    write_csv(out_csv, pd.DataFrame(rows).sort_values(keys))
    columns = [*keys, "step", "forget_loglik", "retain_loglik"]
    write_csv(curves_csv, pd.concat(curves, ignore_index=True)[columns].sort_values(keys + ["step"]))


def truth_ratio_gap(unlearned_truth_ratios, retain_model_truth_ratios) -> np.ndarray:
    """|log R - log R_retain| per question: how far the unlearned model's truth ratio lies from the
    model never trained on the question (0 = as if never trained). Forget quality compares the two
    distributions over the whole forget set; this is its per-question ingredient, so it averages
    over any subset (an author's questions)."""
    return np.abs(np.log(np.asarray(unlearned_truth_ratios, dtype=float))
                  - np.log(np.asarray(retain_model_truth_ratios, dtype=float)))


def author_outcomes(run_dirs: list[str], retain_samples_csvs: dict[str, str], data_dir: str, out_csv: str) -> None:
    """tables/author_outcomes.csv: per run (replicate x algorithm x sampler x seed) and group of the
    forget set (an author, a person), completeness averaged over the group's samples after the
    budget: on QA data the truth-ratio gap to the retain model (`metrics.truth_ratio_gap`, lower is
    more complete), on text data verbatim ROUGE-L. What decides C4's unit
    (`calibration.c4_unit`): are groups independent units of a sampler comparison?"""
    groups = forget_groups(load_study_data(data_dir))
    rows = []
    for run_dir in run_dirs:
        for folder in sorted(Path(run_dir).glob("seed*")):
            run = read_json(folder / "run.json")
            samples = pd.read_csv(folder / "eval_budget_samples.csv")
            samples = samples[samples.split == "forget"].set_index("sample_id")
            if "truth_ratio" in samples and samples.truth_ratio.notna().any():
                retain = pd.read_csv(retain_samples_csvs[str(run["replicate"])])
                retain = retain[retain.split == "forget"].set_index("sample_id").truth_ratio
                outcome, name = truth_ratio_gap(samples.truth_ratio, retain.reindex(samples.index)), "truth_ratio_gap"
            else:
                outcome, name = samples.rouge_l.to_numpy(float), "forget_rouge"
            frame = pd.DataFrame({"group": [groups[i] for i in samples.index], "outcome": outcome})
            for group, value in frame.groupby("group", sort=False).outcome.mean().items():
                rows.append({**{k: run[k] for k in ("replicate", "algorithm", "sampler", "seed")},
                             "group": group, "metric": name, "outcome": value})
    columns = ["replicate", "algorithm", "sampler", "seed", "group", "metric", "outcome"]
    write_csv(out_csv, pd.DataFrame(rows, columns=columns).sort_values(columns[:5]))


def comparison_table(unlearning_csv: str, out_csv: str, forest_png: str, *, statistics_cfg: dict) -> None:
    """tables/comparison.csv: weighted - uniform, paired by (replicate, seed), for every
    algorithm x weighted sampler; pooled over replicates and per replicate (see
    `claims.compare_samplers`); and its forest plot, figures/c4_forest.png."""
    runs = pd.read_csv(unlearning_csv)
    completeness = completeness_metric(runs)
    smallest = smallest_effects(statistics_cfg, completeness)
    table = compare_samplers(runs, alpha=statistics_cfg["alpha"], power=statistics_cfg["power"], smallest=smallest,
                             completeness=completeness)
    write_csv(out_csv, table)
    figures.c4_forest_figure(table, completeness, smallest, forest_png)


def calibration(scores_csv: str, unlearning_csv: str, comparison_csv: str, validation_csv: str, authors_csv: str,
                out_csv: str, unit_csv: str, *, statistics_cfg: dict) -> None:
    """tables/calibration.csv: each claim's verdict rule on studies simulated in this study's
    design (`calibration.calibrate`): its false-verdict rate under no effect and its power at the
    smallest interesting effect. tables/c4_unit.csv: run pairs or groups as C4's unit
    (`calibration.c4_unit`), at the run share measured on the study's per-group outcomes."""
    runs = pd.read_csv(unlearning_csv)
    completeness = completeness_metric(runs)
    design = design_from_study(pd.read_csv(scores_csv), runs, pd.read_csv(comparison_csv, dtype={"replicate": str}),
                               pd.read_csv(validation_csv, dtype={"replicate": str}), completeness,
                               primary_of_runs(statistics_cfg, runs, completeness))
    cal = statistics_cfg["calibration"]
    write_csv(out_csv, calibrate(design, statistics_cfg, simulations=cal["simulations"],
                                 power_simulations=cal["power_simulations"], seed=cal["seed"]))
    share = run_share(group_differences(pd.read_csv(authors_csv, dtype={"group": str})), statistics_cfg["alpha"])
    write_csv(unit_csv, c4_unit(design, statistics_cfg, share, seed=cal["seed"]))


def mrd_figures(scores_csv: str, validation_csv: str, stability_csv: str, sweep_csv: str,
                replicate_stability_csv: str, out: dict[str, str]) -> None:
    scores, stability = pd.read_csv(scores_csv), pd.read_csv(stability_csv)
    validation = pd.read_csv(validation_csv, dtype={"replicate": str})
    main = stability[(stability.variant == "main") & (stability.sweep == "K")]
    figures.difficulty_figure(scores, pd.read_csv(replicate_stability_csv), out["difficulty"])
    figures.mrd_validation_figure(scores, validation, out["validation"])
    pooled = validation[validation.replicate == "pooled"]
    primary = ranked_truths(pooled.ground_truth)[0]  # what C3's verdict reads
    family = list(dict.fromkeys(s for s, k in zip(pooled.score, pooled.kind) if in_c3(s, k)))
    figures.factors_figure(scores, family, primary, out["factors"])
    figures.stability_figure(stability, pd.read_csv(sweep_csv), float(main.sigma.iloc[0]) if len(main) else None,
                             out["stability"])


def unlearning_figures(unlearning_csv: str, curves_csv: str, replicates: dict[str, dict[str, str]],
                       out: dict[str, str]) -> None:
    """`replicates`: r -> {retain: the retain model's evaluation summary} (the level to reach)."""
    levels = {int(r): read_json(files["retain"])["forget_loglik"] for r, files in replicates.items()}
    runs = pd.read_csv(unlearning_csv)
    budgets = runs.groupby("algorithm").steps.max().to_dict()
    figures.unlearning_curves_figure(pd.read_csv(curves_csv), levels, budgets, out["curves"])
    figures.unlearning_tradeoff_figure(runs, out["tradeoff"])
    figures.efficiency_figure(runs, out["efficiency"])


def _forget_rows(path: str) -> pd.DataFrame:
    table = pd.read_csv(path)
    return table[table.split == "forget"]


def recovery_samples(run_dirs: list[str], replicates: dict[str, dict[str, str]], *, min_drop: dict
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run's per-sample recovery (`recovery.sample_recovery`, with each sample's
    `control_change` and `beyond_control` = (attacked - unlearned - control change) /
    (before - unlearned)) and its pooled recovery per (attack, measure) beside its control's
    (`recovery.beyond_control`). `replicates`: r -> {target_samples, retain_samples, controls}."""
    from . import recovery

    changes = {}
    for r, files in replicates.items():
        controls = pd.read_csv(files["controls"])
        plain = {"retain": _forget_rows(files["retain_samples"]), "target": _forget_rows(files["target_samples"])}
        changes[r] = pd.concat([recovery.control_changes(plain[model], part)
                                for model, part in controls.groupby("model", sort=False)], ignore_index=True)
    samples, runs = [], []
    for run_dir in run_dirs:
        for folder in sorted(Path(run_dir).glob("seed*")):
            if not (folder / "attacks_budget.csv").is_file():  # a seed the attacks leave out (C4's extra seeds)
                continue
            run = read_json(folder / "run.json")
            key = {k: run[k] for k in ("replicate", "algorithm", "sampler", "seed")}
            attacked = pd.read_csv(folder / "attacks_budget.csv")
            before = _forget_rows(replicates[str(run["replicate"])]["target_samples"])
            one = recovery.sample_recovery(before, _forget_rows(str(folder / "eval_budget_samples.csv")), attacked,
                                           min_drop=min_drop)
            change = changes[str(run["replicate"])]
            runs.append(recovery.beyond_control(one, change, min_drop=min_drop).assign(**key))
            one = one.merge(change, on=["attack", "sample_id", "measure"], how="left", validate="one_to_one")
            if "overlap" in attacked:
                one = one.merge(attacked[["attack", "sample_id", "overlap"]], on=["attack", "sample_id"], how="left")
            with np.errstate(divide="ignore", invalid="ignore"):
                one["beyond_control"] = one.recovery - one.change / (one.before - one.unlearned)
            one = one.rename(columns={"change": "control_change"})
            samples.append(one.assign(**key))
    keys = ["replicate", "algorithm", "sampler", "seed"]
    samples = pd.concat(samples, ignore_index=True)
    runs = pd.concat(runs, ignore_index=True)
    return (samples[[*keys, *[c for c in samples.columns if c not in keys]]],
            runs[[*keys, *[c for c in runs.columns if c not in keys]]])


PRIMARY_MEASURE = "loglik"  # what the tiers, the difficulty rule and the comparison read (defined on every data)


def robustness_tables(run_dirs: list[str], replicates: dict[str, dict[str, str]], scores_csv: str, samples_csv: str,
                      runs_csv: str, tiers_csv: str, difficulty_csv: str, comparison_csv: str, calibration_csv: str,
                      figure_png: str, *, min_drop: dict, statistics_cfg: dict) -> None:
    """The attacks' tables: tables/recovery_samples.csv (per run, attack, sample and measure),
    tables/recovery_runs.csv (per run, attack and measure: pooled recovery, its control's and
    the difference), and on the answer log-likelihood, recovery beyond the control by difficulty
    tier of MRD and each ground truth (tables/recovery_tiers.csv), whether harder samples recover
    more (tables/recovery_difficulty.csv), MRD-weighted against uniform (tables/robustness.csv),
    those two rules' calibration (tables/robustness_calibration.csv), and the tiers' figure."""
    from . import recovery

    samples, runs = recovery_samples(run_dirs, replicates, min_drop=min_drop)
    write_csv(samples_csv, samples)
    write_csv(runs_csv, runs)
    scores = pd.read_csv(scores_csv)
    difficulty = ["mrd", *[t for t in ("update_count", "update_count_sgd") if t in scores]]
    primary = samples[samples.measure == PRIMARY_MEASURE].merge(
        scores[["replicate", "sample_id", *difficulty]], on=["replicate", "sample_id"], how="left")
    primary = primary.assign(arm=primary.algorithm + "/" + primary.sampler, recovery=primary.beyond_control)
    primary = primary.assign(run=primary.replicate.astype(str) + "/" + primary.arm + "/" + primary.seed.astype(str))
    alpha = statistics_cfg["alpha"]
    write_csv(tiers_csv, recovery.tier_table(primary, difficulty, alpha=alpha))
    correlation = recovery.difficulty_correlation(primary, difficulty, alpha=alpha,
                                                  smallest_rho=statistics_cfg["smallest_rho"])
    write_csv(difficulty_csv, correlation)
    per_run = runs[runs.measure == PRIMARY_MEASURE].assign(recovery=lambda t: t.beyond_control)
    smallest = statistics_cfg["smallest_recovery"]
    write_csv(comparison_csv, recovery.robustness_comparison(per_run, alpha=alpha, power=statistics_cfg["power"],
                                                             smallest=smallest))
    cal = statistics_cfg["calibration"]
    write_csv(calibration_csv, recovery.calibrate_rules(
        primary.assign(score=primary.mrd), per_run, alpha=alpha, power=statistics_cfg["power"],
        smallest_rho=statistics_cfg["smallest_rho"], smallest=smallest, simulations=cal["simulations"],
        power_simulations=cal["power_simulations"], seed=cal["seed"],
        correlation_family=int((correlation.arm == "all").sum())))
    figures.recovery_tiers_figure(pd.read_csv(tiers_csv), "mrd", figure_png)
