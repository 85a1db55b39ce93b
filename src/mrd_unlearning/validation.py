"""Does MRD earn its place? Rank correlation of every difficulty score with each
ground truth (Spearman, bootstrap 95% CI) per replicate and pooled over replicates, MRD's partial
correlation beyond the cheap baselines, how MRD compares with each score, whether difficulty
survives a new training run, and the test-retest stability of every MRD variant."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .difficulty import CHARACTERISTICS, MRD_SCORE, SCORES, in_c3
from .statistics import (CORRELATION, MIN_GROUPS, group_blocks, holm, pooled_bootstrap, resampling_scheme,
                         sample_groups, sign_flip_test)

# Every score's kind and the sign its rationale predicts: `difficulty.SCORES`. Known factors (0)
# are exploratory: C3 asks whether they differ, not how.
PARTIAL_COVARIATES = ("loss", "grad_norm")
# The fractional crossing steps rank where the integer counts tie; they come first (the primary
# ground truth is the first present).
GROUND_TRUTHS = ("update_count_frac", "update_count_sgd_frac", "update_count", "update_count_sgd")
# Made from the ground truth itself (the rest of the sample's group on the same count): within a
# group it falls as the sample's own count rises, so it cannot be tested against it. The group
# question is C1's (`claims.difficulty_by_group`).
NOT_IN_C3 = ("group_difficulty",)
N_RESAMPLES = 2000


def variant_column(name: str) -> str:
    return f"mrd[{name}]"


def _ranks_minus_mean(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties averaged, as scipy's rankdata) minus their mean, along the last axis:
    half the sum of sign(x_i - x_j), which for the short rows of bootstrap resamples is several
    times faster than sorting."""
    if x.shape[-1] > 40:
        r = stats.rankdata(x, axis=-1)
        return r - r.mean(-1, keepdims=True)
    signs = (x[..., :, None] > x[..., None, :]).astype(np.int8) - (x[..., :, None] < x[..., None, :]).astype(np.int8)
    return signs.sum(-1, dtype=np.int32) / 2


def _centered_ranks(x: np.ndarray, axis: int = -1, blocks=None) -> np.ndarray:
    """Ranks along `axis` minus their mean; with `blocks` (group sizes, samples in group order)
    ranked and centred within each group."""
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    if blocks is None:
        r = _ranks_minus_mean(x)
    elif len(set(blocks)) == 1:  # equal groups: one (..., G, m) array
        r = _ranks_minus_mean(x.reshape(*x.shape[:-1], len(blocks), blocks[0])).reshape(x.shape)
    else:
        parts = np.split(x, np.cumsum(blocks)[:-1], axis=-1)
        r = np.concatenate([_ranks_minus_mean(part) for part in parts], axis=-1)
    return np.moveaxis(r, -1, axis)


def _spearman(x: np.ndarray, y: np.ndarray, axis: int = -1, blocks=None) -> np.ndarray:
    """Spearman rho along `axis` (vectorised over bootstrap resamples); with `blocks`, the
    within-group rho: ranks taken and centred within each group, then pooled, so that what groups
    share (an author's easy facts, a person's rare name) does not count as sample-level agreement."""
    rx, ry = _centered_ranks(x, axis, blocks), _centered_ranks(y, axis, blocks)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis) / np.sqrt((rx ** 2).sum(axis) * (ry ** 2).sum(axis))


def _spearman_family(y: np.ndarray, *xs: np.ndarray, axis: int = -1, blocks=None) -> np.ndarray:
    """Spearman rho of y with each of xs, stacked on a new last axis (y ranked once)."""
    ry = _centered_ranks(y, axis, blocks)
    out = []
    for x in xs:
        rx = _centered_ranks(x, axis, blocks)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((rx * ry).sum(axis) / np.sqrt((rx ** 2).sum(axis) * (ry ** 2).sum(axis)))
    return np.stack(np.broadcast_arrays(*out), axis=-1)


def _shared_rows(x: np.ndarray) -> np.ndarray:
    """A per-sample score that is the same in every replicate: one row, ranked once per resample."""
    return x[:1] if x.shape[0] > 1 and (x == x[:1]).all() else x


def rank_association(x, y, *, seed: int = 0, n_resamples: int = N_RESAMPLES, alpha: float = 0.05, groups=None,
                     min_groups: int = MIN_GROUPS) -> dict:
    """Spearman rho of x and y, pooled over replicates ((R, n) arrays, samples aligned; 1-D: one
    replicate), with its interval and p-value from one bootstrap (`statistics.pooled_bootstrap`,
    so they cannot disagree). Samples in groups: the within-group rho, with at least `min_groups`
    groups tested over groups (`group_sign_flip`, exact); with fewer, samples are resampled within
    their groups (the inference conditions on these groups). Where the p-value lies within 3 Monte Carlo
    standard errors of alpha, more resamples are drawn."""
    return family_association([x], y, seed=seed, n_resamples=n_resamples, alpha=alpha, groups=groups,
                              min_groups=min_groups)[0]


def family_association(xs: list, y, *, seed: int = 0, n_resamples: int = N_RESAMPLES, alpha: float = 0.05,
                       groups=None, min_groups: int = MIN_GROUPS) -> list[dict]:
    """`rank_association` of each of xs with y, all on the same resamples: a family that Holm's
    correction decides together (C3's characteristics), with more resamples where Monte Carlo
    error could move one of its Holm decisions; constant scores get NaN."""
    y = np.atleast_2d(np.asarray(y, float))
    xs = [_shared_rows(np.atleast_2d(np.asarray(x, float))) for x in xs]
    nan = float("nan")
    empty = {"spearman_rho": nan, "ci_low": nan, "ci_high": nan, "p_value": nan, "p_mc_se": nan, "n_resamples": 0,
             "resampling": "", "between_sd": nan, "n": y.shape[1], "n_replicates": y.shape[0]}
    live = [i for i, x in enumerate(xs) if np.ptp(x) > 0 and np.ptp(y) > 0]
    out = [dict(empty) for _ in xs]
    if live and resampling_scheme(groups, min_groups) == "groups":
        for i in live:
            out[i] = group_sign_flip(xs[i], y, groups, alpha=alpha, seed=seed)
    elif live:
        res = pooled_bootstrap(_spearman_family, [y, *[xs[i] for i in live]], n_resamples=n_resamples, alpha=alpha,
                               seed=seed, groups=groups, min_groups=min_groups, within=True, bounds=CORRELATION)
        for i, r in zip(live, res):
            out[i] = _pooled_columns(r)
    return out


def group_sign_flip(x, y, groups, *, alpha: float = 0.05, seed: int = 0) -> dict:
    """The within-group Spearman rho pooled over replicates, with groups as the units of inference:
    the rho is a sum of one contribution per group, and under no association within groups each
    contribution is as likely negative as positive, so the sign-flip test over groups is exact
    (`statistics.sign_flip_test`; its interval by inversion is on the rho's scale). It speaks about
    the population of groups (authors) without the cluster bootstrap's few-cluster optimism; the
    smallest p it can give is 2 / 2^groups."""
    order, sizes = group_blocks(groups)
    x, y = (np.atleast_2d(np.asarray(a, float))[:, order] for a in (x, y))
    rx, ry = np.broadcast_arrays(_centered_ranks(x, -1, sizes), _centered_ranks(y, -1, sizes))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_group = np.add.reduceat(rx * ry, np.cumsum([0, *sizes[:-1]]), axis=-1) / \
            np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))[:, None]
    per_replicate = per_group.sum(-1)
    units = len(sizes) * per_group.mean(0)  # their mean is the pooled rho
    test = sign_flip_test(units, alpha=alpha, seed=seed)
    R = per_group.shape[0]
    return {"n": y.shape[1], "n_replicates": y.shape[0], "spearman_rho": float(per_replicate.mean()),
            "ci_low": max(-1.0, test["ci_low"]), "ci_high": min(1.0, test["ci_high"]), "p_value": test["p_value"],
            "p_mc_se": test["p_mc_se"], "n_resamples": test["n_patterns"], "resampling": "group sign-flip",
            "between_sd": float(np.std(per_replicate, ddof=1)) if R > 1 else float("nan")}


def spearman_with_ci(x: np.ndarray, y: np.ndarray, **kw) -> dict:
    """`rank_association` of two per-sample vectors (one replicate)."""
    out = rank_association(np.asarray(x, float)[None], np.asarray(y, float)[None], **kw)
    return {k: out[k] for k in ("spearman_rho", "ci_low", "ci_high", "p_value", "p_mc_se", "n_resamples",
                                "resampling")}


def partial_spearman(x: np.ndarray, y: np.ndarray, covariates: np.ndarray, blocks=None) -> float:
    """Spearman rho of x and y after removing, from both ranks, what the covariates' ranks
    explain (ranks within groups with `blocks`)."""
    ranks = lambda v: _centered_ranks(np.asarray(v, float), axis=0, blocks=blocks)  # noqa: E731
    design = np.column_stack([np.ones(len(x)), ranks(covariates)])
    residual = lambda v: v - design @ np.linalg.lstsq(design, v, rcond=None)[0]  # noqa: E731
    rx, ry = residual(ranks(x)), residual(ranks(y))
    denom = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else np.nan


def _partial_stat(x, y, *covariates, blocks=None):
    return partial_spearman(x, y, np.column_stack(covariates), blocks=blocks)


def partial_spearman_with_ci(x, y, covariates, *, seed: int = 0, n_resamples: int = N_RESAMPLES, alpha: float = 0.05,
                             groups=None, min_groups: int = MIN_GROUPS) -> dict:
    """`partial_spearman` of one replicate with the interval and p-value of one bootstrap."""
    x, y, covariates = np.asarray(x, float), np.asarray(y, float), np.asarray(covariates, float).reshape(len(x), -1)
    res = pooled_bootstrap(_partial_stat, [a[None] for a in (x, y, *covariates.T)], seed=seed, n_resamples=n_resamples,
                           alpha=alpha, groups=groups, min_groups=min_groups, vectorized=False, within=True,
                           bounds=CORRELATION)
    return _pooled_columns(res)


def _abs_rho_gap_stat(a, b, y, axis=-1, blocks=None):
    return np.abs(_spearman(a, y, axis, blocks)) - np.abs(_spearman(b, y, axis, blocks))


def score_catalogue(scores: pd.DataFrame, factor_columns: list[str]) -> list[tuple[str, str, int]]:
    """(column, kind, expected sign) of every difficulty score present in `scores`."""
    out = [(MRD_SCORE, "mrd", 1)]
    out += [(c, "mrd variant", 1) for c in scores.columns if c.startswith("mrd[")]
    out += [(c, kind, sign) for c, (kind, sign) in SCORES.items() if c != MRD_SCORE and c in scores]
    out += [(c, "known factor", 0) for c in factor_columns if c in scores]
    listed = {c for c, _, _ in out}
    out += [(c, "sample characteristic", 0) for c in CHARACTERISTICS
            if c in scores and c not in listed and c not in NOT_IN_C3]
    return out


def _by_replicate(scores: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """(R, n) array per column: replicates with a value for every sample, samples aligned."""
    wide = [scores.pivot(index="replicate", columns="sample_id", values=c) for c in columns]
    keep = np.all([~w.isna().any(axis=1).to_numpy() for w in wide], axis=0)
    return [w.to_numpy(float)[keep] for w in wide]


def validation_table(scores: pd.DataFrame, factor_columns: list[str], *, seed: int = 0, n_resamples: int = N_RESAMPLES,
                     alpha: float = 0.05, min_groups: int = MIN_GROUPS) -> pd.DataFrame:
    """Every score against every ground truth, per replicate and pooled over replicates
    (`replicate` = "pooled": the mean rho with the crossed replicate x sample bootstrap of
    `statistics.pooled_bootstrap`, and the between-replicate SD), each with the interval and
    p-value of one bootstrap (`rank_association`). Beside each: MRD's paired gap |rho(MRD)| -
    |rho(score)|, and the partial rho of MRD given loss and gradient norm. Where samples come in
    groups (`group`: an author's QA, a person's facts), `n_groups` says how many and `resampling`
    how they were resampled: whole groups from `min_groups` on, else within their groups (the
    rho is then the within-group rho). C3's family (known factors and sample characteristics)
    gets Holm-adjusted p-values (`p_holm`) per ground truth, within each replicate and within the
    pooled rows, on enough resamples that Monte Carlo error cannot move a Holm decision."""
    if "replicate" not in scores:
        scores = scores.assign(replicate=0)
    scores = scores.drop(columns=[c for c in NOT_IN_C3 if c in scores])
    kw = dict(n_resamples=n_resamples, alpha=alpha, min_groups=min_groups)
    kw["groups"] = sample_groups(scores)  # one label per sample, in sample_id order; None: each alone
    n_groups = len(set(kw["groups"])) if kw["groups"] is not None else None
    rows = []
    catalogue = score_catalogue(scores, factor_columns)
    covariates = [c for c in PARTIAL_COVARIATES if c in scores]
    for truth in [g for g in GROUND_TRUTHS if g in scores]:
        blocks = [(str(r), part) for r, part in scores.groupby("replicate", sort=True)] + [("pooled", scores)]
        for replicate, part in blocks:
            measured = []  # (column, kind, sign, x, y, mrd) of every score with a value for every sample
            for column, kind, sign in catalogue:
                x, y, mrd = _by_replicate(part, [column, truth, MRD_SCORE])
                if len(x):  # else e.g. a variant measured on the first replicate only
                    measured.append((column, kind, sign, x, y, mrd))
            family = [m[0] for m in measured if in_c3(m[0], m[1])]
            results = {}
            if family:  # C3's family on the replicates where all of it was measured, resampled together
                y_family, *xs = _by_replicate(part, [truth, *family])
                results = dict(zip(family, family_association(xs, y_family, seed=seed, **kw)))
            for column, kind, sign, x, y, mrd in measured:
                res = results.get(column) or rank_association(x, y, seed=seed, **kw)
                row = {"replicate": replicate, "score": column, "kind": kind, "ground_truth": truth,
                       "expected_sign": sign, **res}
                row["method"] = "spearman within groups" if row["resampling"] == "within" else "spearman"
                if column != MRD_SCORE and np.ptp(x) > 0:
                    gap = pooled_bootstrap(_abs_rho_gap_stat, [mrd, x, y], seed=seed, within=True,
                                           bounds=CORRELATION, **kw)
                    row.update({"abs_rho_gap_vs_mrd": gap["estimate"], "gap_ci_low": gap["ci_low"],
                                "gap_ci_high": gap["ci_high"]})
                rows.append(row)
            if covariates:
                arrays = _by_replicate(part, [MRD_SCORE, truth, *covariates])
                pooled = pooled_bootstrap(_partial_stat, arrays, seed=seed, vectorized=False, within=True,
                                          bounds=CORRELATION, **kw)
                rows.append({"replicate": replicate, "score": f"{MRD_SCORE} given {' + '.join(covariates)}",
                             "kind": "partial", "ground_truth": truth, "expected_sign": 1,
                             "method": "partial spearman" + (" within groups" if pooled["scheme"] == "within" else ""),
                             **_pooled_columns(pooled)})
    table = pd.DataFrame(rows)
    front = ["replicate", "score", "kind", "ground_truth", "method", "expected_sign", "n", "n_replicates"]
    table = table[front + [c for c in table.columns if c not in front]]
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
            "p_mc_se": pooled["p_mc_se"], "n_resamples": pooled["n_resamples"], "resampling": pooled["scheme"],
            "between_sd": pooled["between_sd"]}


def replicate_stability(scores: pd.DataFrame, columns: list[str], *, seed: int = 0, n_resamples: int = N_RESAMPLES,
                        alpha: float = 0.05, min_groups: int = MIN_GROUPS) -> pd.DataFrame:
    """Is difficulty a property of the sample or of the training run? For each per-sample
    quantity, the Spearman rho between every pair of replicates (same samples, different
    training seeds), and their mean, each with a bootstrap CI resampling samples as their groups
    allow (the total rho: a sample keeps its difficulty whether its group or itself carries it)."""
    groups = sample_groups(scores)
    kw = dict(seed=seed, n_resamples=n_resamples, alpha=alpha, groups=groups, min_groups=min_groups, bounds=CORRELATION)
    rows = []
    for column in columns:
        wide = scores.pivot(index="sample_id", columns="replicate", values=column).dropna(axis=1)
        reps = list(wide.columns)
        if len(reps) < 2:
            continue
        pairs = [(a, b) for i, a in enumerate(reps) for b in reps[i + 1:]]
        arrays = [wide[r].to_numpy(float)[None] for r in reps]

        def mean_pairwise(*cols, axis=-1):
            return np.mean([_spearman(cols[i], cols[j], axis) for i in range(len(cols)) for j in range(i + 1, len(cols))],
                           axis=0)

        for a, b in pairs:
            res = pooled_bootstrap(_spearman, [wide[a].to_numpy(float)[None], wide[b].to_numpy(float)[None]], **kw)
            rows.append({"quantity": column, "replicate_a": str(a), "replicate_b": str(b), "n": len(wide),
                         "spearman_rho": res["estimate"], "ci_low": res["ci_low"], "ci_high": res["ci_high"],
                         "p_value": res["p_value"]})
        res = pooled_bootstrap(mean_pairwise, arrays, **kw)
        rows.append({"quantity": column, "replicate_a": "mean of pairs", "replicate_b": "", "n": len(wide),
                     "spearman_rho": res["estimate"], "ci_low": res["ci_low"], "ci_high": res["ci_high"],
                     "p_value": np.nan})
    return pd.DataFrame(rows, columns=["quantity", "replicate_a", "replicate_b", "n", "spearman_rho", "ci_low",
                                       "ci_high", "p_value"])


# --- the estimator itself: the sigma sweep (the variants are measured in variants.py) ------------

def sigma_sweep_table(scores: pd.DataFrame, variant_drops: pd.DataFrame, stability: pd.DataFrame,
                      eps: float) -> pd.DataFrame:
    """Along the sigma grid: stability, curvature share, and what D tracks (ground truths,
    gradient norm, loss). At small sigma |d| is the gradient norm in disguise."""
    sweep = stability[stability.sweep == "sigma"]
    scores = scores.sort_values("sample_id")
    columns = [c for c in [*GROUND_TRUTHS, "grad_norm", "loss"] if c in scores]
    from .mrd import mrd_from_drop  # here, so that the pooled jobs that never call it load no torch

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
