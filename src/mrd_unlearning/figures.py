"""The study's figures (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from .io import atomic_path  # noqa: E402

SAMPLER_COLORS = {"uniform": "#4c72b0", "mrd": "#dd8452", "mrd_curriculum": "#55a868", "mrd_inverse": "#c44e52"}


def _save(fig, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)


def mrd_figure(scores: pd.DataFrame, path: str) -> None:
    """C1: spread of required updates; C2: MRD and loss against them."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    censored = scores.censored.astype(bool)
    axes[0].hist(scores.update_count, bins=min(20, max(5, len(scores) // 3)), color="#4c72b0")
    axes[0].set(xlabel="required updates (GA, own optimizer)", ylabel="forget samples",
                title=f"C1: difficulty spread ({censored.sum()} censored)")
    for ax, col, label in ((axes[1], "mrd", "MRD (log scale)"), (axes[2], "loss", "loss  -L(z)")):
        rho = stats.spearmanr(scores[col], scores.update_count)[0]
        ax.scatter(scores[col][~censored], scores.update_count[~censored], s=18, label="reached retain level")
        ax.scatter(scores[col][censored], scores.update_count[censored], s=18, marker="^", label="censored (cap)")
        ax.set(xlabel=label, ylabel="required updates", title=f"C2: {col} vs updates, Spearman {rho:.2f}")
        if col == "mrd" and (scores.mrd > 0).all():
            ax.set_xscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def unlearning_figure(table: pd.DataFrame, curves: pd.DataFrame, path: str) -> None:
    """C4: forget-set likelihood during unlearning (mean and range over seeds), and the
    forget quality / model utility trade-off of each run."""
    algorithms = sorted(curves.algorithm.unique())
    fig, axes = plt.subplots(1, len(algorithms) + 1, figsize=(4.5 * (len(algorithms) + 1), 3.8), squeeze=False)
    for ax, algorithm in zip(axes[0], algorithms):
        for sampler, group in curves[curves.algorithm == algorithm].groupby("sampler"):
            stat = group.groupby("step").forget_loglik.agg(["mean", "min", "max"])
            color = SAMPLER_COLORS.get(sampler)
            ax.plot(stat.index, stat["mean"], label=sampler, color=color)
            ax.fill_between(stat.index, stat["min"], stat["max"], alpha=0.2, color=color)
        ax.set(xlabel="unlearning step", ylabel="forget mean L(z)", title=f"{algorithm}: forgetting curve")
        ax.legend(fontsize=8)
    ax = axes[0][-1]
    for (algorithm, sampler), group in table.groupby(["algorithm", "sampler"]):
        ax.scatter(group.model_utility, group.forget_quality, color=SAMPLER_COLORS.get(sampler), s=25,
                   label=f"{algorithm}/{sampler}")
    ax.set(xlabel="model utility", ylabel="forget quality (KS p-value)", yscale="log", title="per run (seed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
