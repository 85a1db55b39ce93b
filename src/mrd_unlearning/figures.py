"""The study's figures (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from .claims import COMPARED, ranked_truths  # noqa: E402
from .io import atomic_path  # noqa: E402
from .metrics import forgetting_progress  # noqa: E402
from .statistics import mean_ci  # noqa: E402

SAMPLER_COLORS = {"uniform": "#4c72b0", "mrd": "#dd8452", "mrd_curriculum": "#55a868", "mrd_inverse": "#c44e52",
                  "mrd_refresh": "#8172b3", "sorted": "#937860", "rum": "#da8bc3"}
# for arms beyond those (a sampler driven by another score, `mrd@loss`): colours chosen one by one to
# lie as far (in RGB) from the samplers' and each other's as they can
SPARE_COLORS = ("#000000", "#ff00ff", "#00bfff", "#e6e600", "#000080", "#800000", "#00ff7f", "#ff1493", "#006d6f",
                "#98df8a", "#aec7e8", "#556b2f")
MARKERS = "osD^vP*Xph<>H8d"


def arm_styles(arms) -> dict[str, dict]:
    """A distinct colour and marker for every sampler arm: the sampler's own colour for a plain
    sampler, a spare one for a sampler driven by another score, so that no two arms of a figure
    look alike (matplotlib's default cycle gives `mrd@loss` uniform's blue)."""
    arms = sorted(set(arms), key=lambda a: (a not in SAMPLER_COLORS, a))
    spare = iter(c for c in SPARE_COLORS if c not in {SAMPLER_COLORS[a] for a in arms if a in SAMPLER_COLORS})
    if len(arms) > len(SAMPLER_COLORS) + len(SPARE_COLORS) or len(arms) > len(MARKERS):
        raise ValueError(f"{len(arms)} sampler arms: more than the figures can tell apart")
    return {arm: {"color": SAMPLER_COLORS[arm] if arm in SAMPLER_COLORS else next(spare), "marker": MARKERS[i]}
            for i, arm in enumerate(arms)}


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


def difficulty_figure(scores: pd.DataFrame, replicate_stability: pd.DataFrame, path: str) -> None:
    """C1: the spread of required updates per ground truth (every replicate), how the two orders
    relate, and whether a sample keeps its difficulty in another training run."""
    truths = [t for t in ("update_count", "update_count_sgd") if t in scores]
    fig, axes = plt.subplots(1, len(truths) + 2, figsize=(4.3 * (len(truths) + 2), 3.6))
    n, reps = int(scores.groupby("replicate").size().max()), scores.replicate.nunique()
    for ax, truth in zip(axes, truths):
        censored = scores[truth.replace("update_count", "censored")]
        _censored_hist(ax, scores[truth], censored, f"{truth}\n{reps} replicate(s) x {n} samples, pooled")
    ax = axes[len(truths)]
    if len(truths) == 2:
        rho = stats.spearmanr(scores[truths[0]], scores[truths[1]])[0]
        for r, part in scores.groupby("replicate"):
            ax.scatter(part[truths[0]], part[truths[1]], s=14, alpha=0.7, label=f"replicate {r}")
        ax.set(xlabel=truths[0], ylabel=truths[1], title=f"the two orders: Spearman {rho:.2f}")
        ax.legend(fontsize=7)
    else:
        ax.axis("off")
    ax = axes[-1]
    mean = replicate_stability[replicate_stability.replicate_a == "mean of pairs"]
    if len(mean):
        y = np.arange(len(mean))
        ax.errorbar(mean.spearman_rho, y, xerr=[mean.spearman_rho - mean.ci_low, mean.ci_high - mean.spearman_rho],
                    fmt="o", color="#4c72b0", capsize=3)
        ax.set_yticks(y, mean.quantity)
        ax.axvline(0, color="k", lw=0.8)
        ax.set(xlim=(-1.05, 1.05), xlabel="Spearman rho between replicates (95% CI)",
               title="same sample, another training run")
    else:
        ax.text(0.5, 0.5, "one replicate:\nno cross-replicate stability", ha="center", va="center")
        ax.axis("off")
    fig.suptitle("C1: how many updates each forget sample needs", y=1.02)
    fig.tight_layout()
    _save(fig, path)


KIND_COLORS = {"mrd": "#dd8452", "mrd variant": "#f0b27a", "baseline": "#4c72b0", "known factor": "#55a868",
               "oracle": "#8172b3", "partial": "#937860", "third-party MRD": "#da8bc3", "entanglement": "#8c8c8c",
               "learning events": "#ccb974"}


def mrd_validation_figure(scores: pd.DataFrame, validation: pd.DataFrame, path: str) -> None:
    """C2: MRD against required updates, and every score's pooled rho with its CI (per-replicate
    values as small dots), side by side."""
    validation = validation.astype({"replicate": str})
    pooled = validation[validation.replicate == "pooled"]
    order = list(dict.fromkeys(pooled.score))
    truths = ranked_truths(pooled.ground_truth)
    primary = truths[0]
    censored_of = "censored_sgd" if "sgd" in primary else "censored"
    fig, axes = plt.subplots(1, 2, figsize=(13, max(4.0, 0.32 * len(order) + 1.2)),
                             gridspec_kw={"width_ratios": [1, 1.3]})
    ax = axes[0]
    censored_any = False
    for (r, part), marker in zip(scores.groupby("replicate"), itertools.cycle(MARKERS)):
        # each replicate's own sigma sets its MRD scale: its rank within the replicate compares across them
        rank = part.mrd.rank(pct=True)
        censored = part[censored_of].astype(bool)
        censored_any |= bool(censored.any())
        ax.scatter(rank[~censored], part[primary][~censored], s=16, alpha=0.7, marker=marker, label=f"replicate {r}")
        ax.scatter(rank[censored], part[primary][censored], s=30, marker=marker, facecolors="none", edgecolors="k",
                   alpha=0.8)
    if censored_any:
        ax.scatter([], [], s=30, marker="o", facecolors="none", edgecolors="k", label="censored at the cap (open)")
    rho = pooled[(pooled.score == "mrd") & (pooled.ground_truth == primary)].spearman_rho
    ax.set(xlabel="MRD rank within its replicate (0 = easiest, 1 = hardest)", ylabel=f"required updates ({primary})",
           title=f"MRD vs required updates: pooled Spearman {float(rho.iloc[0]) if len(rho) else np.nan:.2f}")
    ax.legend(fontsize=7)
    ax = axes[1]
    y = np.arange(len(order))
    for j, truth in enumerate(truths):
        rows = pooled[pooled.ground_truth == truth].set_index("score").reindex(order)
        offset = (j - (len(truths) - 1) / 2) * 0.3
        colors = [KIND_COLORS.get(k, "k") for k in rows.kind.fillna("baseline")]
        ax.errorbar(rows.spearman_rho, y + offset, xerr=[rows.spearman_rho - rows.ci_low, rows.ci_high - rows.spearman_rho],
                    fmt="none", ecolor="#999999", elinewidth=1)
        ax.scatter(rows.spearman_rho, y + offset, c=colors, marker="os^D"[j % 4], s=28, zorder=3, label=truth)
        each = validation[(validation.ground_truth == truth) & (validation.replicate != "pooled")]
        ax.scatter(each.spearman_rho, [order.index(s_) + offset for s_ in each.score], s=5, color="k", alpha=0.4,
                   zorder=2)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, order, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="Spearman rho with required updates: pooled (95% CI), replicates as dots", title="every score, side by side")
    ax.legend(fontsize=7, title="ground truth (marker)", title_fontsize=7)
    fig.suptitle("C2: does MRD predict how many updates a sample needs?", y=1.01)
    fig.tight_layout()
    _save(fig, path)


def factors_figure(scores: pd.DataFrame, factors: list[str], truth: str, path: str) -> None:
    """C3: what its verdict reads, its family of known factors and characteristics, in the
    easiest vs the hardest third of forget samples by its ground truth (each sample's mean over
    replicates)."""
    factors = [f for f in factors if f in scores] or [c for c in ("answer_tokens", "loss") if c in scores]
    scores = scores.groupby("sample_id").mean(numeric_only=True)  # a sample's mean over replicates
    low, high = np.percentile(scores[truth], [100 / 3, 200 / 3])
    easy, hard = scores[scores[truth] <= low], scores[scores[truth] >= high]
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
        ax.set(title=f"{factor}\nMann-Whitney p = {p:.2g} (uncorrected)", ylabel=factor)
    for ax in list(axes.flat)[len(factors):]:
        ax.axis("off")
    fig.suptitle(f"C3: easiest (<= {low:.3g} {truth}, n={len(easy)}) vs hardest (>= {high:.3g}, n={len(hard)}) third "
                 f"of the forget samples, mean over replicates", y=1.02)
    fig.tight_layout()
    _save(fig, path)


def stability_figure(stability: pd.DataFrame, sweep: pd.DataFrame, chosen_sigma: float | None, path: str) -> None:
    """Test-retest stability of each variant against K, and of the main statistics along sigma
    (the first replicate that ran the variant study)."""
    if "replicate" in stability and len(stability):
        first = stability.replicate.min()
        stability = stability[stability.replicate == first]
        sweep = sweep[sweep.replicate == first] if "replicate" in sweep else sweep
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
    ax.set(xlabel="sigma (perturbation scale)", ylabel="Spearman rho, or share of positive drops",
           ylim=(-1.05, 1.05), title="along the sigma grid")
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


def unlearning_curves_figure(curves: pd.DataFrame, levels: dict[int, float], budgets: dict[str, int],
                             path: str) -> None:
    """C4: forgetting progress (L0 - L_t) / (L0 - L_retain) of the forget set (1 = the retain
    model's level of that replicate) and the retain set's mean likelihood during unlearning, per
    algorithm, one colour per sampler; mean and 95% band over replicates x seeds, up to each
    algorithm's budget (past it only the runs still short of the level go on: their mean would
    describe a different set of runs)."""
    curves = curves[curves.step <= curves.algorithm.map(budgets)].copy()
    curves["progress"] = np.nan
    for key, run in curves.groupby(["replicate", "algorithm", "sampler", "seed"]):
        curves.loc[run.index, "progress"] = forgetting_progress(run.forget_loglik.to_numpy(), levels[int(key[0])])
    curves["run"] = curves.replicate.astype(str) + "/" + curves.seed.astype(str)
    algorithms = sorted(curves.algorithm.unique())
    styles = arm_styles(curves.sampler)
    fig, axes = plt.subplots(2, len(algorithms), figsize=(4.4 * len(algorithms), 6.4), squeeze=False, sharex="col")
    for col, algorithm in enumerate(algorithms):
        for row, (column, label) in enumerate((("progress", "forgetting progress\n(L0 - Lt) / (L0 - L_retain); 1 = retain"),
                                               ("retain_loglik", "retain set: mean answer\nlog-likelihood per token (nats)"))):
            ax = axes[row][col]
            for sampler, group in curves[curves.algorithm == algorithm].groupby("sampler"):
                mean, low, high = _mean_band(group.pivot_table(index="step", columns="run", values=column))
                style = styles[sampler]
                ax.plot(mean.index, mean, label=sampler, **style, ms=4, markevery=max(1, len(mean) // 6))
                ax.fill_between(mean.index, low, high, alpha=0.2, color=style["color"])
            if row == 0:
                ax.axhline(1.0, color="k", ls=":", lw=1, label="retain model's level")
                ax.set_title(algorithm)
            ax.set(ylabel=label, xlabel="unlearning step" if row == 1 else None)
            ax.legend(fontsize=7)
    fig.suptitle("C4: unlearning curves (mean and 95% band over replicates x seeds)", y=1.0)
    fig.tight_layout()
    _save(fig, path)


def _errorbar(ax, table: pd.DataFrame, x: str, y: str, markers: dict, colors: dict) -> None:
    for (algorithm, sampler), group in table.groupby(["algorithm", "sampler"]):
        (xm, xlo, xhi), (ym, ylo, yhi) = (_interval(group[c]) for c in (x, y))
        ax.errorbar(xm, ym, xerr=[[xm - xlo], [xhi - xm]], yerr=[[ym - ylo], [yhi - ym]], fmt=markers[algorithm],
                    color=colors[sampler], ms=6, capsize=2, label=f"{algorithm} / {sampler}")


def unlearning_tradeoff_figure(table: pd.DataFrame, path: str) -> None:
    """C4: forget quality vs model utility after the budget and at equal forgetting, per algorithm
    (marker) x sampler (colour), mean and 95% CI over replicates x seeds."""
    markers = dict(zip(sorted(table.algorithm.unique()), itertools.cycle(MARKERS)))  # any number of algorithms
    colors = {arm: style["color"] for arm, style in arm_styles(table.sampler).items()}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
    _errorbar(axes[0], table, "model_utility", "forget_quality", markers, colors)
    axes[0].set(xlabel="model utility", ylabel="forget quality (KS p-value)", title="after the budget")
    _errorbar(axes[1], table, "level_model_utility", "level_forget_quality", markers, colors)
    axes[1].set(xlabel="model utility", ylabel="forget quality (KS p-value)",
                title="at equal forgetting (retain model's level, or the cap)")
    axes[1].legend(fontsize=6, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    _save(fig, path)


def efficiency_figure(table: pd.DataFrame, path: str) -> None:
    """C4 efficiency: Kaplan-Meier curves (scipy) of the steps until the forget set reaches the
    retain model's level, censored at the budget: the share of runs not there yet."""
    algorithms = sorted(table.algorithm.unique())
    styles = arm_styles(table.sampler)
    fig, axes = plt.subplots(1, len(algorithms), figsize=(4.4 * len(algorithms), 3.6), squeeze=False)
    for ax, algorithm in zip(axes[0], algorithms):
        runs = table[table.algorithm == algorithm]
        for sampler, group in runs.groupby("sampler"):
            data = stats.CensoredData.right_censored(group.steps_to_forget.to_numpy(float),
                                                     group.steps_censored.astype(bool).to_numpy())
            sf = stats.ecdf(data).sf
            t = np.concatenate([[0.0], sf.quantiles, [float(group.steps.max())]])
            ax.step(t, np.concatenate([[1.0], sf.probabilities, [sf.probabilities[-1]]]), where="post",
                    **styles[sampler], ms=4, markevery=(1, 2), label=f"{sampler} ({(~group.steps_censored.astype(bool)).sum()}"
                                                           f"/{len(group)} reached)")
        ax.set(xlabel="unlearning step", ylabel="runs not yet at the retain level", ylim=(-0.03, 1.03),
               title=f"{algorithm}: budget {int(runs.steps.max())} steps")
        ax.legend(fontsize=7)
    fig.suptitle("C4: steps to forget (Kaplan-Meier, censored at the budget)", y=1.02)
    fig.tight_layout()
    _save(fig, path)


def c4_forest_figure(comparison: pd.DataFrame, completeness: str, gains: dict[str, float], path: str) -> None:
    """C4 in one picture: per algorithm x weighted sampler, the pooled paired difference from
    uniform (95% CI) after the budget and at equal forgetting, per metric the verdict reads; the
    band the design could detect (+/- the minimum detectable effect at Holm's first level) and
    the paper's gain (the smallest effect of interest) marked."""
    pairs = comparison[(comparison.replicate.astype(str) == "pooled") & (comparison.family == "paper")]
    metrics = [completeness, "model_utility"]
    fig, axes = plt.subplots(1, 2, figsize=(12, max(2.6, 0.5 * len(pairs) + 1.6)), squeeze=False)
    labels = [f"{r.algorithm} {r.sampler}" for r in pairs.itertuples()]
    y = np.arange(len(pairs))
    for ax, metric in zip(axes[0], metrics):
        gain = gains[metric] * COMPARED[metric]  # the gain in the metric's better direction
        mde = pairs[f"{metric}_mde"].to_numpy(float)
        ax.barh(y, 2 * mde, left=-mde, height=0.7, color="#dddddd", label="detectable (80% power): +/- MDE")
        for shift, prefix, marker, name in ((-0.15, "", "o", "after the budget"),
                                            (0.15, "level_", "s", "at equal forgetting")):
            column = f"{prefix}{metric}"
            if f"{column}_diff" not in pairs or pairs[f"{column}_diff"].isna().all():
                continue
            diff = pairs[f"{column}_diff"].to_numpy(float)
            low, high = pairs[f"{column}_ci_low"].to_numpy(float), pairs[f"{column}_ci_high"].to_numpy(float)
            ax.errorbar(diff, y + shift, xerr=[diff - low, high - diff], fmt=marker, color="#4c72b0" if not prefix
                        else "#dd8452", ms=5, capsize=2, label=f"{name}: difference, 95% CI")
        ax.axvline(0, color="k", lw=0.8)
        ax.axvline(gain, color="#55a868", ls="--", lw=1.2, label="the paper's gain")
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        better = "higher is better" if COMPARED[metric] > 0 else "lower is better"
        ax.set(xlabel=f"{metric}: weighted - uniform ({better})", title=f"{metric} (the paper's gain: {gain:+g})")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("C4: MRD-weighted sampling against uniform, paired over replicates x seeds (pooled)", y=1.02)
    fig.tight_layout()
    _save(fig, path)


def recovery_tiers_figure(tiers: pd.DataFrame, score: str, path: str) -> None:
    """Does forgetting hold for the hard samples? Mean recovery (95% CI over runs) per difficulty
    tier of `score` (`recovery.tier_table`), one panel per attack; colour = sampler, marker and
    line style = algorithm (arms are "algorithm/sampler"). 0 = the attack brings nothing back,
    1 = all that unlearning removed."""
    tiers = tiers[tiers.score == score]
    attacks, arms, order = (list(dict.fromkeys(tiers[c])) for c in ("attack", "arm", "tier"))
    algorithms = list(dict.fromkeys(a.split("/")[0] for a in arms))
    colors = {arm: style["color"] for arm, style in arm_styles([a.split("/")[-1] for a in arms]).items()}
    markers = dict(zip(algorithms, MARKERS))
    lines = dict(zip(algorithms, itertools.cycle(["-", "--", ":", "-."])))
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.2 * len(attacks), 3.6), squeeze=False, sharey=True)
    for ax, attack in zip(axes[0], attacks):
        for i, arm in enumerate(arms):
            algorithm, sampler = arm.split("/")[0], arm.split("/")[-1]
            part = tiers[(tiers.attack == attack) & (tiers.arm == arm)].set_index("tier").reindex(order)
            x = np.arange(len(order)) + (i - 0.5 * (len(arms) - 1)) * 0.05
            ax.errorbar(x, part.recovery, yerr=[part.recovery - part.ci_low, part.ci_high - part.recovery],
                        marker=markers[algorithm], ls=lines[algorithm], color=colors[sampler], ms=5, capsize=2,
                        label=arm)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(order)), order)
        ax.set(xlabel=f"difficulty tier ({score})", title=attack)
    axes[0][0].set_ylabel("recovery (share of the drop)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Recovery after each attack, by difficulty tier (mean over runs, 95% CI)", y=1.02)
    fig.tight_layout()
    _save(fig, path)
