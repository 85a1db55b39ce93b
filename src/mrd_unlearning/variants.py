"""The MRD variant study on one replicate's target model: every estimator variant and the main
estimator at each K (and, with the sweep, at each grid sigma) on two independent perturbation
sets, so that its test-retest stability says which settings give a stable ranking. A job of
its own, apart from the pooled validation, which needs no torch."""
from __future__ import annotations

import pandas as pd

from .mrd import Estimator, MRDResult, PerturbationScorer, difficulty_drop
from .validation import _spearman


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
