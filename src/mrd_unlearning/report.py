"""report.md (tables, figures, claim-by-claim verdict) and metrics.json (headline numbers)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .io import atomic_path, read_json, write_json


# The comparison columns the report shows (tables/comparison.csv has every metric).
REPORTED_COMPARISON = ["algorithm", "sampler", "n_pairs",
                       "forget_quality_diff", "forget_quality_ci_low", "forget_quality_ci_high",
                       "model_utility_diff", "model_utility_ci_low", "model_utility_ci_high", "steps_to_forget_diff"]


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "nan" if np.isnan(v) else f"{v:.{digits}g}" if abs(v) < 1e-2 and v != 0 else f"{v:.{digits}f}"
        return str(v)

    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "".join("| " + " | ".join(fmt(v) for v in row) + " |\n" for row in frame.itertuples(index=False))


def _ci_verdict(low: float, high: float, positive_is_good: bool = True) -> str:
    if np.isnan(low) or np.isnan(high):
        return "inconclusive (too few seeds for a CI)"
    if low > 0:
        return "supported" if positive_is_good else "contradicted"
    if high < 0:
        return "contradicted" if positive_is_good else "supported"
    return "not supported (95% CI includes 0)"


def write(*, name: str, paths: dict[str, str], out_md: str, out_metrics: str) -> None:
    target, retain = read_json(paths["target_eval"]), read_json(paths["retain_eval"])
    target_ft, retain_ft = read_json(paths["target_finetune"]), read_json(paths["retain_finetune"])
    mrd_meta = read_json(paths["mrd_meta"])
    scores = pd.read_csv(paths["scores"])
    validation = pd.read_csv(paths["validation"])
    runs = pd.read_csv(paths["unlearning"])
    comparison = pd.read_csv(paths["comparison"])
    rel = lambda p: os.path.relpath(p, Path(out_md).parent)  # noqa: E731

    counts = scores.update_count
    q10, q50, q90 = np.percentile(counts, [10, 50, 90])
    spread = q90 / max(q10, 1)
    rho = validation.set_index("score").loc["mrd"] if "mrd" in set(validation.score) else None

    memo = pd.DataFrame([
        {"model": role, "epochs": ft["history"][-1]["epoch"] if ft["history"] else 0,
         "reached criterion": ft["reached_criterion"], "forget token acc": ev["forget_token_accuracy"],
         "forget ROUGE-L": ev["forget_rouge"], "forget prob": ev["forget_prob"],
         "retain token acc": ev["retain_token_accuracy"], "retain ROUGE-L": ev["retain_rouge"],
         "model utility": ev["model_utility"], "forget quality": ev.get("forget_quality", 1.0)}
        for role, ft, ev in (("target", target_ft, target), ("retain", retain_ft, retain))])

    summary = runs.groupby(["algorithm", "sampler"])[
        ["forget_quality", "model_utility", "forget_prob", "forget_rouge", "forget_truth_ratio", "mia_auc",
         "steps_to_forget", "wall_s"]].mean().reset_index()

    lines = [
        f"# MRD study: `{name}`\n",
        "MRD is this project's documented reading of arXiv:2504.06658 (the paper's exact formula was not "
        "available): D(z) = mean over K common Gaussian weight perturbations of the drop in the mean answer "
        "log-likelihood, MRD = 1/max(D, eps). See README.\n",
        "## Fine-tuned models (memorisation)\n",
        _table(memo),
        f"\nThe target model is trained on `full`, the retain model on the retain split only, both until "
        f"answer-token accuracy on their own training data reaches the memorisation criterion.\n",
        "## MRD\n",
        f"K = {mrd_meta['K']}, sigma = {mrd_meta['sigma']:g} (share of positive drops "
        f"{mrd_meta['positive_share']:.2f}), {mrd_meta['n_samples']} forget samples, {mrd_meta['wall_s']:.1f} s.\n",
        "### Does a score predict the required updates? (Spearman, bootstrap 95% CI)\n",
        _table(validation),
        "\n`retain_model_loss_oracle` is an oracle: it needs the retain model, which nobody has in practice.\n",
        f"![MRD]({rel(paths['mrd_figure'])})\n",
        "## Unlearning\n",
        "Mean over seeds:\n",
        _table(summary),
        "\nPaired differences vs `uniform` (same algorithm and seed), mean and 95% CI over seeds:\n",
        _table(comparison[REPORTED_COMPARISON]),
        f"\n![Unlearning]({rel(paths['unlearning_figure'])})\n",
        "## Claims, on this configuration\n",
        f"- **C1 (difficulty varies):** required updates range {counts.min()}-{counts.max()} "
        f"(10th/50th/90th percentile {q10:.0f}/{q50:.0f}/{q90:.0f}, {int(scores.censored.sum())} censored at the cap). "
        f"Verdict: {'supported' if spread >= 2 else 'not supported'} (90th/10th percentile ratio {spread:.1f}; "
        f"supported when at least 2).",
    ]
    if rho is not None:
        lines.append(
            f"- **C2 (MRD predicts required updates):** Spearman rho = {rho.spearman_rho:.2f} "
            f"[{rho.ci_low:.2f}, {rho.ci_high:.2f}]. Verdict: {_ci_verdict(rho.ci_low, rho.ci_high)}. "
            "Compare with the baselines in the table above before crediting MRD.")
    factor_rows = validation[validation.score.isin(["value_frequency", "answer_length"])]
    lines.append("- **C3 (hard and easy samples differ in known factors):** "
                 + ("; ".join(f"{r.score}: rho {r.spearman_rho:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"
                              for r in factor_rows.itertuples()) or "no known factors in this data")
                 + " (sign: higher = predicted harder).")
    for r in comparison.itertuples():
        lines.append(
            f"- **C4 ({r.algorithm} + {r.sampler} vs uniform):** forget quality {r.forget_quality_diff:+.3g} "
            f"[{r.forget_quality_ci_low:.3g}, {r.forget_quality_ci_high:.3g}] "
            f"({_ci_verdict(r.forget_quality_ci_low, r.forget_quality_ci_high)}); model utility "
            f"{r.model_utility_diff:+.3g} [{r.model_utility_ci_low:.3g}, {r.model_utility_ci_high:.3g}] "
            f"({_ci_verdict(r.model_utility_ci_low, r.model_utility_ci_high)}); {r.n_pairs} seed pairs.")
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")

    metrics = {
        "target_forget_token_accuracy": target["forget_token_accuracy"],
        "target_forget_rouge": target["forget_rouge"],
        "retain_forget_token_accuracy": retain["forget_token_accuracy"],
        "mrd_sigma": mrd_meta["sigma"],
        "mrd_positive_share": mrd_meta["positive_share"],
        "update_count_p90_over_p10": float(spread),
    }
    if rho is not None:
        metrics["rho_mrd_update_count"] = float(rho.spearman_rho)
    for r in summary.itertuples():
        metrics[f"{r.algorithm}_{r.sampler}_forget_quality"] = float(r.forget_quality)
        metrics[f"{r.algorithm}_{r.sampler}_model_utility"] = float(r.model_utility)
    write_json(out_metrics, metrics)
