"""Does MRD earn its place (STUDY 3.5, 4)? Rank correlation of every difficulty score with each
ground truth (Spearman, bootstrap 95% CI) per replicate and pooled over replicates, MRD's partial
correlation beyond the cheap baselines, how MRD compares with each score, whether difficulty
survives a new training run, and the test-retest stability of every MRD variant."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .mrd import Estimator, MRDResult, PerturbationScorer, difficulty_drop, mrd_from_drop
from .difficulty import CHARACTERISTICS, MRD_SCORE, SCORES, group_difficulty, in_c3
from .statistics import holm, pooled_bootstrap, sample_groups

# Every score's kind and the sign its rationale predicts: `difficulty.SCORES`. Known factors (0)
# are exploratory: C3 asks whether they differ, not how.
PARTIAL_COVARIATES = ("loss", "grad_norm")
# The fractional crossing steps rank where the integer counts tie; they come first (the primary
# ground truth is the first present).
GROUND_TRUTHS = ("update_count_frac", "update_count_sgd_frac", "update_count", "update_count_sgd")
N_RESAMPLES = 2000


def variant_column(name: str) -> str:
    return f"mrd[{name}]"


def _spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman rho along `axis` (vectorised over bootstrap resamples)."""
    rx, ry = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
    rx, ry = rx - rx.mean(axis, keepdims=True), ry - ry.mean(axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis) / np.sqrt((rx ** 2).sum(axis) * (ry ** 2).sum(axis))


def _clustered(groups) -> bool:
    """Whether some samples share a group (else the cluster bootstrap is the sample bootstrap)."""
    return groups is not None and len(set(np.asarray(groups).tolist())) < len(groups)


def _cluster_bootstrap(data: tuple, statistic, seed: int, vectorized: bool, n_resamples: int, alpha: float,
                       groups) -> dict:
    return pooled_bootstrap(statistic, [np.asarray(a, float)[None] for a in data], n_resamples=n_resamples,
                            alpha=alpha, seed=seed, vectorized=vectorized, groups=groups)


def _bootstrap_ci(data: tuple, statistic, seed: int, vectorized: bool = True, n_resamples: int = N_RESAMPLES,
                  alpha: float = 0.05, groups=None) -> tuple[float, float]:
    """Percentile CI of a statistic of paired samples: scipy's bootstrap, or with `groups` the
    two-stage cluster bootstrap (groups, then samples within them)."""
    if _clustered(groups):
        res = _cluster_bootstrap(data, statistic, seed, vectorized, n_resamples, alpha, groups)
        return res["ci_low"], res["ci_high"]
    res = stats.bootstrap(data, statistic, paired=True, vectorized=vectorized, n_resamples=n_resamples,
                          confidence_level=1 - alpha, method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def spearman_with_ci(x: np.ndarray, y: np.ndarray, *, seed: int = 0, n_resamples: int = N_RESAMPLES,
                     alpha: float = 0.05, groups=None) -> dict:
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho, p = stats.spearmanr(x, y)
    if np.isnan(rho):
        return {"spearman_rho": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
    if _clustered(groups):  # the test must see the groups too: the bootstrap's p, not the exact one
        res = _cluster_bootstrap((x, y), _spearman, seed, True, n_resamples, alpha, groups)
        return {"spearman_rho": float(rho), "ci_low": res["ci_low"], "ci_high": res["ci_high"],
                "p_value": res["p_value"]}
    low, high = _bootstrap_ci((x, y), _spearman, seed, n_resamples=n_resamples, alpha=alpha)
    return {"spearman_rho": float(rho), "ci_low": low, "ci_high": high, "p_value": float(p)}


def partial_spearman(x: np.ndarray, y: np.ndarray, covariates: np.ndarray) -> float:
    """Spearman rho of x and y after removing, from both ranks, what the covariates' ranks explain."""
    ranks = lambda v: stats.rankdata(v, axis=0)  # noqa: E731
    design = np.column_stack([np.ones(len(x)), ranks(covariates)])
    residual = lambda v: v - design @ np.linalg.lstsq(design, v, rcond=None)[0]  # noqa: E731
    rx, ry = residual(ranks(x)), residual(ranks(y))
    denom = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else np.nan


def _partial_stat(x, y, *covariates):
    return partial_spearman(x, y, np.column_stack(covariates))


def partial_spearman_with_ci(x, y, covariates, *, seed: int = 0, n_resamples: int = N_RESAMPLES,
                             alpha: float = 0.05, groups=None) -> dict:
    x, y, covariates = np.asarray(x, float), np.asarray(y, float), np.asarray(covariates, float).reshape(len(x), -1)
    rho = partial_spearman(x, y, covariates)
    dof = len(x) - 2 - covariates.shape[1]
    t = rho * np.sqrt(dof / max(1e-300, 1 - rho ** 2))
    low, high = _bootstrap_ci((x, y, *covariates.T), _partial_stat, seed, vectorized=False, n_resamples=n_resamples,
                              alpha=alpha, groups=groups)
    return {"spearman_rho": rho, "ci_low": low, "ci_high": high, "p_value": float(2 * stats.t.sf(abs(t), dof))}


def _abs_rho_gap_stat(a, b, y, axis=-1):
    return np.abs(_spearman(a, y, axis)) - np.abs(_spearman(b, y, axis))


def _abs_rho_gap(mrd: np.ndarray, other: np.ndarray, truth: np.ndarray, seed: int, **kw) -> dict:
    """|rho(MRD)| - |rho(other)| on the same bootstrap resamples (paired): does MRD rank better?"""
    low, high = _bootstrap_ci((mrd, other, truth), _abs_rho_gap_stat, seed, **kw)
    return {"abs_rho_gap_vs_mrd": float(_abs_rho_gap_stat(mrd, other, truth)), "gap_ci_low": low, "gap_ci_high": high}


def score_catalogue(scores: pd.DataFrame, factor_columns: list[str]) -> list[tuple[str, str, int]]:
    """(column, kind, expected sign) of every difficulty score present in `scores`."""
    out = [(MRD_SCORE, "mrd", 1)]
    out += [(c, "mrd variant", 1) for c in scores.columns if c.startswith("mrd[")]
    out += [(c, kind, sign) for c, (kind, sign) in SCORES.items() if c != MRD_SCORE and c in scores]
    out += [(c, "known factor", 0) for c in factor_columns if c in scores]
    listed = {c for c, _, _ in out}
    out += [(c, "sample characteristic", 0) for c in CHARACTERISTICS if c in scores and c not in listed]
    return out


def _by_replicate(scores: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """(R, n) array per column: replicates with a value for every sample, samples aligned."""
    wide = [scores.pivot(index="replicate", columns="sample_id", values=c) for c in columns]
    keep = np.all([~w.isna().any(axis=1).to_numpy() for w in wide], axis=0)
    return [w.to_numpy(float)[keep] for w in wide]


def validation_table(scores: pd.DataFrame, factor_columns: list[str], *, seed: int = 0, n_resamples: int = N_RESAMPLES,
                     alpha: float = 0.05) -> pd.DataFrame:
    """Every score against every ground truth, per replicate (Spearman, bootstrap CI, exact p)
    and pooled over replicates (`replicate` = "pooled": the mean rho with the crossed replicate x
    sample bootstrap of `statistics.pooled_bootstrap`, and the between-replicate SD). Beside
    each: MRD's paired gap |rho(MRD)| - |rho(score)|, and the partial rho of MRD given loss and
    gradient norm. Where samples come in groups (`group`: an author's QA, a person's facts) every
    CI and per-replicate p is a cluster bootstrap over them, and `n_groups` says how many. C3's
    family (known factors and sample characteristics) gets Holm-adjusted p-values (`p_holm`) per
    ground truth, within each replicate and within the pooled rows."""
    if "replicate" not in scores:
        scores = scores.assign(replicate=0)
    kw = dict(n_resamples=n_resamples, alpha=alpha)
    kw["groups"] = sample_groups(scores)  # one label per sample, in sample_id order; None: each alone
    n_groups = len(set(kw["groups"])) if kw["groups"] is not None else None
    rows = []
    catalogue = score_catalogue(scores, factor_columns)
    covariates = [c for c in PARTIAL_COVARIATES if c in scores]
    for truth in [g for g in GROUND_TRUTHS if g in scores]:
        if kw["groups"] is not None:  # C3: the rest of the sample's group, on this ground truth
            rest = pd.Series(np.nan, index=scores.index)
            for _, part in scores.groupby("replicate"):
                rest[part.index] = group_difficulty(part[truth], part.group)
            scores = scores.assign(group_difficulty=rest)
            catalogue = score_catalogue(scores, factor_columns)
        for replicate, rep in scores.groupby("replicate", sort=True):
            rep = rep.sort_values("sample_id")
            y, mrd = rep[truth].to_numpy(float), rep[MRD_SCORE].to_numpy(float)
            for column, kind, sign in catalogue:
                x = rep[column].to_numpy(float)
                if np.isnan(x).any():
                    continue  # e.g. a variant measured on the first replicate only
                row = {"replicate": str(replicate), "score": column, "kind": kind, "ground_truth": truth,
                       "method": "spearman", "expected_sign": sign, "n": len(x), "n_replicates": 1,
                       **spearman_with_ci(x, y, seed=seed, **kw)}
                if column != MRD_SCORE and np.ptp(x) > 0:
                    row.update(_abs_rho_gap(mrd, x, y, seed, **kw))
                rows.append(row)
            if covariates:
                rows.append({"replicate": str(replicate), "score": f"{MRD_SCORE} given {' + '.join(covariates)}",
                             "kind": "partial", "ground_truth": truth, "method": "partial spearman",
                             "expected_sign": 1, "n": len(y), "n_replicates": 1,
                             **partial_spearman_with_ci(mrd, y, rep[covariates].to_numpy(float), seed=seed, **kw)})
        for column, kind, sign in catalogue:
            x, y, mrd = _by_replicate(scores, [column, truth, MRD_SCORE])
            if not len(x):
                continue
            pooled = pooled_bootstrap(_spearman, [x, y], seed=seed, **kw)
            row = {"replicate": "pooled", "score": column, "kind": kind, "ground_truth": truth, "method": "spearman",
                   "expected_sign": sign, **_pooled_columns(pooled)}
            if column != MRD_SCORE and np.ptp(x) > 0:
                gap = pooled_bootstrap(_abs_rho_gap_stat, [mrd, x, y], seed=seed, **kw)
                row.update({"abs_rho_gap_vs_mrd": gap["estimate"], "gap_ci_low": gap["ci_low"],
                            "gap_ci_high": gap["ci_high"]})
            rows.append(row)
        if covariates:
            arrays = _by_replicate(scores, [MRD_SCORE, truth, *covariates])
            pooled = pooled_bootstrap(_partial_stat, arrays, seed=seed, vectorized=False, **kw)
            rows.append({"replicate": "pooled", "score": f"{MRD_SCORE} given {' + '.join(covariates)}",
                         "kind": "partial", "ground_truth": truth, "method": "partial spearman", "expected_sign": 1,
                         **_pooled_columns(pooled)})
    table = pd.DataFrame(rows)
    # the unit of the bootstrap: groups of samples (each sample alone where the data has none)
    table.insert(int(table.columns.get_loc("n")) + 1, "n_groups", n_groups if n_groups is not None else table.n)
    table["p_holm"] = np.nan
    c3 = np.array([in_c3(score, kind) for score, kind in zip(table.score, table.kind)], dtype=bool)
    for _, family in table[c3].groupby(["replicate", "ground_truth"]):
        table.loc[family.index, "p_holm"] = holm(family.p_value)
    return table


def _pooled_columns(pooled: dict) -> dict:
    return {"n": pooled["n"], "n_replicates": pooled["n_replicates"], "spearman_rho": pooled["estimate"],
            "ci_low": pooled["ci_low"], "ci_high": pooled["ci_high"], "p_value": pooled["p_value"],
            "between_sd": pooled["between_sd"]}


def replicate_stability(scores: pd.DataFrame, columns: list[str], *, seed: int = 0, n_resamples: int = N_RESAMPLES,
                        alpha: float = 0.05) -> pd.DataFrame:
    """Is difficulty a property of the sample or of the training run? For each per-sample
    quantity, the Spearman rho between every pair of replicates (same samples, different
    training seeds), and their mean, each with a (cluster) bootstrap CI."""
    groups = sample_groups(scores)
    rows = []
    for column in columns:
        wide = scores.pivot(index="sample_id", columns="replicate", values=column).dropna(axis=1)
        reps = list(wide.columns)
        if len(reps) < 2:
            continue
        pairs = [(a, b) for i, a in enumerate(reps) for b in reps[i + 1:]]
        for a, b in pairs:
            rows.append({"quantity": column, "replicate_a": str(a), "replicate_b": str(b), "n": len(wide),
                         **spearman_with_ci(wide[a], wide[b], seed=seed, n_resamples=n_resamples, alpha=alpha,
                                            groups=groups)})
        arrays = tuple(wide[r].to_numpy(float) for r in reps)

        def mean_pairwise(*cols, axis=-1):
            return np.mean([_spearman(cols[i], cols[j], axis) for i in range(len(cols)) for j in range(i + 1, len(cols))],
                           axis=0)

        low, high = _bootstrap_ci(arrays, mean_pairwise, seed, n_resamples=n_resamples, alpha=alpha, groups=groups)
        rows.append({"quantity": column, "replicate_a": "mean of pairs", "replicate_b": "", "n": len(wide),
                     "spearman_rho": float(mean_pairwise(*arrays)), "ci_low": low, "ci_high": high, "p_value": np.nan})
    return pd.DataFrame(rows, columns=["quantity", "replicate_a", "replicate_b", "n", "spearman_rho", "ci_low",
                                       "ci_high", "p_value"])


# --- the estimator itself: variants, test-retest, sigma sweep ---------------------------------

def estimator_study(scorer: PerturbationScorer, main: Estimator, variants: dict[str, Estimator], *, seed: int,
                    retest_seed: int, sigma_grid: list[float], positive_share: float, K_grid: list[int],
                    sigma_sweep: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-sample D of every variant (seed `seed`), and the stability table: the Spearman rho
    between D from two independent perturbation sets (`seed`, `retest_seed`), for each variant
    at each K, and, for the main estimator's statistics, at each grid sigma."""
    drops, stability = [], []

    def study(name: str, est: Estimator, sweep: str, Ks: list[int]) -> None:
        first = scorer.estimate(est, seed=seed, sigma_grid=sigma_grid, positive_share=positive_share)
        retest = scorer.estimate(est.with_overrides({"sigma": first.sigma}), seed=retest_seed)
        for K in Ks:
            a = MRDResult(first.loglik, first.drops[:K], first.sigma, float((first.drops[:K] > 0).mean()))
            b = MRDResult(retest.loglik, retest.drops[:K], retest.sigma, 0.0)
            Da, Db = (difficulty_drop(r, est.statistic, est.normalize) for r in (a, b))
            stability.append({"variant": name, "sweep": sweep, **est.describe(), "sigma": first.sigma, "K": K,
                              "positive_share": a.positive_share, "retest_rho": float(_spearman(Da, Db))})
        D = difficulty_drop(first, est.statistic, est.normalize)
        drops.extend({"variant": name, "sample_id": i, "drop": d} for i, d in enumerate(D))

    for name, est in {"main": main, **variants}.items():
        study(name, est, "K", sorted({k for k in K_grid if k < est.K} | {est.K}))
    if sigma_sweep:
        for sigma in sorted(sigma_grid):
            for statistic in ("signed", "abs"):
                est = main.with_overrides({"sigma": sigma, "statistic": statistic})
                study(f"sigma_sweep/{statistic}/{sigma:g}", est, "sigma", [main.K])
    return pd.DataFrame(drops), pd.DataFrame(stability)


def sigma_sweep_table(scores: pd.DataFrame, variant_drops: pd.DataFrame, stability: pd.DataFrame,
                      eps: float) -> pd.DataFrame:
    """Along the sigma grid: stability, curvature share, and what D tracks (ground truths,
    gradient norm, loss). At small sigma |d| is the gradient norm in disguise (STUDY 3.2)."""
    sweep = stability[stability.sweep == "sigma"]
    scores = scores.sort_values("sample_id")
    columns = [c for c in [*GROUND_TRUTHS, "grad_norm", "loss"] if c in scores]
    rows = []  # empty (with its columns) when the sweep is off: mrd.validation.sigma_sweep false
    for r in sweep.itertuples():
        D = variant_drops[variant_drops.variant == r.variant].sort_values("sample_id")["drop"].to_numpy()
        mrd = mrd_from_drop(D, eps)
        row = {"statistic": r.statistic, "sigma": r.sigma, "K": r.K, "positive_share": r.positive_share,
               "retest_rho": r.retest_rho}
        for column in columns:
            row[f"rho_mrd_{column}"] = float(_spearman(mrd, scores[column].to_numpy(float)))
        rows.append(row)
    return pd.DataFrame(rows, columns=["statistic", "sigma", "K", "positive_share", "retest_rho",
                                       *[f"rho_mrd_{c}" for c in columns]])
