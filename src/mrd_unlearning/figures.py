"""The study's figures (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from .io import atomic_path  # noqa: E402
from .metrics import mean_ci  # noqa: E402

SAMPLER_COLORS = {"uniform": "#4c72b0", "mrd": "#dd8452", "mrd_curriculum": "#55a868", "mrd_inverse": "#c44e52",
                  "mrd_refresh": "#8172b3"}


def _save(fig, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)


def _censored_hist(ax, counts: pd.Series, censored: pd.Series, title: str) -> None:
    censored = censored.astype(bool)
    bins = np.histogram_bin_edges(counts, bins=min(20, max(5, len(counts) // 3)))
    ax.hist([counts[~censored], counts[censored]], bins=bins, stacked=True, color=["#4c72b0", "#c44e52"],
            label=["reached retain level", "censored at cap"])
    ax.set(xlabel="required updates", ylabel="forget samples", title=title)
    ax.legend(fontsize=7)


def difficulty_figure(scores: pd.DataFrame, path: str) -> None:
    """C1: the spread of required updates per ground truth, and how the two orders relate."""
    truths = [t for t in ("update_count", "update_count_sgd") if t in scores]
    fig, axes = plt.subplots(1, len(truths) + 1, figsize=(4.3 * (len(truths) + 1), 3.6))
    for ax, truth in zip(axes, truths):
        q10, q90 = np.percentile(scores[truth], [10, 90])
        censored = scores[truth.replace("update_count", "censored")]
        _censored_hist(ax, scores[truth], censored, f"{truth}: p90/p10 = {q90 / max(q10, 1):.1f}")
    ax = axes[-1]
    if len(truths) == 2:
        rho = stats.spearmanr(scores[truths[0]], scores[truths[1]])[0]
        ax.scatter(scores[truths[0]], scores[truths[1]], s=16, color="#4c72b0")
        ax.set(xlabel=truths[0], ylabel=truths[1], title=f"the two orders: Spearman {rho:.2f}")
    else:
        ax.axis("off")
    fig.suptitle("C1: how many updates each forget sample needs", y=1.02)
    fig.tight_layout()
    _save(fig, path)


KIND_COLORS = {"mrd": "#dd8452", "mrd variant": "#f0b27a", "baseline": "#4c72b0", "known factor": "#55a868",
               "oracle": "#8c8c8c", "partial": "#c44e52"}


def mrd_validation_figure(scores: pd.DataFrame, validation: pd.DataFrame, path: str) -> None:
    """C2: MRD against required updates, and every score's rho with CIs, side by side."""
    order = list(dict.fromkeys(validation.score))
    truths = list(dict.fromkeys(validation.ground_truth))
    fig, axes = plt.subplots(1, 2, figsize=(13, max(4.0, 0.32 * len(order) + 1.2)),
                             gridspec_kw={"width_ratios": [1, 1.3]})
    ax = axes[0]
    censored = scores.censored.astype(bool)
    rho = stats.spearmanr(scores.mrd, scores.update_count)[0]
    ax.scatter(scores.mrd[~censored], scores.update_count[~censored], s=18, label="reached retain level")
    ax.scatter(scores.mrd[censored], scores.update_count[censored], s=22, marker="^", label="censored (cap)")
    if (scores.mrd > 0).all():
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(xlabel="MRD = 1 / D (log scale)", ylabel="required updates (unlearning optimizer)",
           title=f"MRD vs required updates: Spearman {rho:.2f}")
    ax.legend(fontsize=7)
    ax = axes[1]
    y = np.arange(len(order))
    for j, truth in enumerate(truths):
        rows = validation[validation.ground_truth == truth].set_index("score").reindex(order)
        offset = (j - (len(truths) - 1) / 2) * 0.3
        colors = [KIND_COLORS.get(k, "k") for k in rows.kind.fillna("baseline")]
        ax.errorbar(rows.spearman_rho, y + offset, xerr=[rows.spearman_rho - rows.ci_low, rows.ci_high - rows.spearman_rho],
                    fmt="none", ecolor="#999999", elinewidth=1)
        ax.scatter(rows.spearman_rho, y + offset, c=colors, marker="os^D"[j % 4], s=28, zorder=3, label=truth)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, order, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="Spearman rho with required updates (95% bootstrap CI)", title="every score, side by side")
    ax.legend(fontsize=7, title="ground truth (marker)", title_fontsize=7)
    fig.suptitle("C2: does MRD predict how many updates a sample needs?", y=1.01)
    fig.tight_layout()
    _save(fig, path)


def factors_figure(scores: pd.DataFrame, factors: list[str], path: str) -> None:
    """C3: known factors of the easiest vs the hardest third of forget samples."""
    factors = factors or [c for c in ("answer_tokens", "loss") if c in scores]
    low, high = np.percentile(scores.update_count, [100 / 3, 200 / 3])
    easy, hard = scores[scores.update_count <= low], scores[scores.update_count >= high]
    cols = min(4, max(1, len(factors)))
    rows = int(np.ceil(len(factors) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, factor in zip(axes.flat, factors):
        data = [easy[factor].dropna().to_numpy(float), hard[factor].dropna().to_numpy(float)]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks([1, 2], ["easy third", "hard third"])
        for i, d in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(d)), d, s=10, alpha=0.6, color=["#55a868", "#c44e52"][i - 1])
        p = stats.mannwhitneyu(*data).pvalue if all(len(d) and np.ptp(np.concatenate(data)) > 0 for d in data) else np.nan
        ax.set(title=f"{factor}\nMann-Whitney p = {p:.2g}", ylabel=factor)
    for ax in list(axes.flat)[len(factors):]:
        ax.axis("off")
    fig.suptitle(f"C3: easy (<= {low:.0f} updates, n={len(easy)}) vs hard (>= {high:.0f}, n={len(hard)}) samples", y=1.02)
    fig.tight_layout()
    _save(fig, path)


def stability_figure(stability: pd.DataFrame, sweep: pd.DataFrame, chosen_sigma: float | None, path: str) -> None:
    """Test-retest stability of each variant against K, and of the main statistics along sigma."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    ax = axes[0]
    for variant, group in stability[stability.sweep == "K"].groupby("variant", sort=False):
        ax.plot(group.K, group.retest_rho, marker="o", label=variant, lw=2.2 if variant == "main" else 1.2)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="K perturbations", ylabel="Spearman rho between two independent seeds", ylim=(-1.05, 1.05),
           title="test-retest stability vs K")
    ax.axhline(0, color="k", lw=0.6)
    ax.legend(fontsize=7)
    ax = axes[1]
    styles = {"signed": "-", "abs": "--"}
    for statistic, group in sweep.groupby("statistic"):
        ls = styles.get(statistic, "-")
        ax.plot(group.sigma, group.retest_rho, ls, marker="o", color="#4c72b0", label=f"{statistic}: test-retest rho")
        if "rho_mrd_grad_norm" in group:
            ax.plot(group.sigma, group.rho_mrd_grad_norm, ls, marker="s", color="#8c8c8c", label=f"{statistic}: rho(MRD, grad norm)")
        if "rho_mrd_update_count" in group:
            ax.plot(group.sigma, group.rho_mrd_update_count, ls, marker="^", color="#dd8452",
                    label=f"{statistic}: rho(MRD, updates)")
    share = sweep[sweep.statistic == "signed"].sort_values("sigma")
    ax.plot(share.sigma, share.positive_share, ":", color="#55a868", lw=2, label="share of positive drops")
    if chosen_sigma is not None:
        ax.axvline(chosen_sigma, color="#c44e52", lw=1, label=f"chosen sigma {chosen_sigma:g}")
    ax.set_xscale("log")
    ax.axhline(0, color="k", lw=0.6)
    ax.set(xlabel="sigma", ylim=(-1.05, 1.05), title="along the sigma grid")
    ax.legend(fontsize=6, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    _save(fig, path)


def _interval(values) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds; with a single seed the interval is the point."""
    m, lo, hi = mean_ci(values)
    return m, (m if np.isnan(lo) else lo), (m if np.isnan(hi) else hi)


def _mean_band(values: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per row (step): `_interval` over the columns (seeds)."""
    ci = pd.DataFrame([_interval(row) for row in values.to_numpy(float)], index=values.index, columns=["m", "lo", "hi"])
    return ci.m, ci.lo, ci.hi


def unlearning_curves_figure(curves: pd.DataFrame, retain_level: float, path: str) -> None:
    """C4: forget- and retain-set likelihood during unlearning, mean and 95% band over seeds,
    one panel pair per algorithm, one colour per sampler."""
    algorithms = sorted(curves.algorithm.unique())
    fig, axes = plt.subplots(2, len(algorithms), figsize=(4.4 * len(algorithms), 6.4), squeeze=False, sharex="col")
    for col, algorithm in enumerate(algorithms):
        for row, (column, label) in enumerate((("forget_loglik", "forget mean L(z)"),
                                               ("retain_loglik", "retain mean L(z)"))):
            ax = axes[row][col]
            for sampler, group in curves[curves.algorithm == algorithm].groupby("sampler"):
                mean, low, high = _mean_band(group.pivot_table(index="step", columns="seed", values=column))
                color = SAMPLER_COLORS.get(sampler)
                ax.plot(mean.index, mean, label=sampler, color=color)
                ax.fill_between(mean.index, low, high, alpha=0.2, color=color)
            if row == 0:
                ax.axhline(retain_level, color="k", ls=":", lw=1, label="retain model's level")
                ax.set_title(algorithm)
            ax.set(ylabel=label, xlabel="unlearning step" if row == 1 else None)
            ax.legend(fontsize=7)
    fig.suptitle("C4: unlearning curves (mean and 95% band over seeds)", y=1.0)
    fig.tight_layout()
    _save(fig, path)


def unlearning_tradeoff_figure(table: pd.DataFrame, path: str) -> None:
    """C4: forget quality vs model utility per algorithm x sampler (mean and 95% CI over seeds),
    and steps until the forget set reaches the retain model's likelihood."""
    algorithms = sorted(table.algorithm.unique())
    samplers = [s for s in SAMPLER_COLORS if s in set(table.sampler)] + sorted(set(table.sampler) - set(SAMPLER_COLORS))
    markers = dict(zip(algorithms, "osD^vP"))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
    ax = axes[0]
    for (algorithm, sampler), group in table.groupby(["algorithm", "sampler"]):
        (mu, mu_lo, mu_hi), (fq, fq_lo, fq_hi) = (_interval(group[c]) for c in ("model_utility", "forget_quality"))
        ax.errorbar(mu, fq, xerr=[[mu - mu_lo], [mu_hi - mu]], yerr=[[fq - fq_lo], [fq_hi - fq]],
                    fmt=markers[algorithm], color=SAMPLER_COLORS.get(sampler, "k"), ms=6, capsize=2,
                    label=f"{algorithm} / {sampler}")
    ax.set(xlabel="model utility", ylabel="forget quality (KS p-value)", title="per algorithm x sampler, mean and 95% CI")
    ax.legend(fontsize=6, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax = axes[1]
    width = 0.8 / max(1, len(samplers))
    for j, sampler in enumerate(samplers):
        rows = table[table.sampler == sampler]
        means, lows, highs = [], [], []
        for algorithm in algorithms:
            m, lo, hi = _interval(rows[rows.algorithm == algorithm].steps_to_forget)
            means.append(m), lows.append(m - lo), highs.append(hi - m)
        x = np.arange(len(algorithms)) + (j - (len(samplers) - 1) / 2) * width
        ax.bar(x, means, width, yerr=[lows, highs], color=SAMPLER_COLORS.get(sampler), label=sampler, capsize=2)
        for xi, m in zip(x, means):
            if np.isnan(m):
                ax.text(xi, 0.5, "not reached", rotation=90, ha="center", va="bottom", fontsize=7, color="#555555")
    ax.set_xticks(np.arange(len(algorithms)), algorithms)
    ax.set(ylabel="steps until forget L reaches the retain level",
           title="steps to forget (missing: not reached within the budget)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
