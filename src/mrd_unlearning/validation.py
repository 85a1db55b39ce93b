"""Does a difficulty score predict the ground truth? Spearman rho with a bootstrap 95% CI."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

# score column -> sign that makes "higher = predicted harder"; oracle scores are labelled as such
SCORES = {
    "mrd": 1,
    "loss": 1,
    "answer_length": 1,
    "value_frequency": -1,
    "retain_model_loss_oracle": -1,
}


def spearman_with_ci(x: np.ndarray, y: np.ndarray, *, n_resamples: int = 2000, seed: int = 0) -> dict:
    rho, p = stats.spearmanr(x, y)
    if np.isnan(rho):
        return {"spearman_rho": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan")}
    ci = stats.bootstrap((x, y), lambda a, b: stats.spearmanr(a, b)[0], paired=True, vectorized=False,
                         n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return {"spearman_rho": float(rho), "ci_low": float(ci.low), "ci_high": float(ci.high), "p_value": float(p)}


def validation_table(scores: pd.DataFrame, ground_truth: str = "update_count") -> pd.DataFrame:
    rows = []
    for score, sign in SCORES.items():
        if score in scores:
            rows.append({"score": score, "ground_truth": ground_truth,
                         **spearman_with_ci(sign * scores[score].to_numpy(float), scores[ground_truth].to_numpy(float))})
    return pd.DataFrame(rows)
