"""The figures draw any number of algorithms and samplers (the full study has 9 x 8)."""
import numpy as np
import pandas as pd

from mrd_unlearning import figures
from mrd_unlearning.unlearning import ALGORITHMS


def test_tradeoff_and_efficiency_figures_take_every_algorithm(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"replicate": r, "algorithm": a, "sampler": s, "seed": k, "model_utility": rng.uniform(),
             "forget_quality": rng.uniform(), "level_model_utility": rng.uniform(),
             "level_forget_quality": rng.uniform(), "steps_to_forget": rng.uniform(5, 30), "steps": 35,
             "steps_censored": bool(rng.uniform() < 0.2)}
            for r in range(2) for a in ALGORITHMS for s in ("uniform", "mrd", "sorted", "mrd@loss") for k in range(2)]
    table = pd.DataFrame(rows)
    figures.unlearning_tradeoff_figure(table, str(tmp_path / "tradeoff.png"))
    figures.efficiency_figure(table, str(tmp_path / "efficiency.png"))
    for name in ("tradeoff.png", "efficiency.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
