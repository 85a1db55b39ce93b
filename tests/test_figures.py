"""The figures draw any number of algorithms and samplers (the full study has 9 x 8), each arm in
a colour and marker of its own."""
import itertools

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb

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


def test_every_sampler_arm_gets_its_own_colour_and_marker(tmp_path, monkeypatch):
    """No two arms of a figure look alike: `mrd@loss` once took uniform's blue from matplotlib's
    default cycle. Checked on the style table and on the lines the curves and Kaplan-Meier plots draw."""
    from mrd_unlearning.sampling import SAMPLERS

    arms = [*SAMPLERS, "mrd@loss", "mrd@grad_norm", "rum@learning_confidence", "sorted@loss"]
    styles = figures.arm_styles(arms)
    assert len({s["marker"] for s in styles.values()}) == len(arms)
    rgb = [to_rgb(s["color"]) for s in styles.values()]  # apart enough to tell, not merely different hex codes
    assert min(np.linalg.norm(np.subtract(a, b)) for a, b in itertools.combinations(rgb, 2)) > 0.2  # mrd@loss had 0.18
    assert styles["uniform"]["color"] == figures.SAMPLER_COLORS["uniform"]

    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig))
    rng = np.random.default_rng(0)
    samplers = ("uniform", "mrd", "mrd@loss", "rum@learning_confidence")
    table = pd.DataFrame([{"replicate": 0, "algorithm": "ga", "sampler": s, "seed": k, "steps_to_forget": rng.uniform(5, 30),
                           "steps": 35, "steps_censored": k == 0} for s in samplers for k in range(3)])
    curves = pd.DataFrame([{"replicate": 0, "algorithm": "ga", "sampler": s, "seed": k, "step": t,
                            "forget_loglik": -t * rng.uniform(0.1, 1), "retain_loglik": -1.0}
                           for s in samplers for k in range(2) for t in range(0, 12, 2)])
    figures.efficiency_figure(table, str(tmp_path / "km.png"))
    figures.unlearning_curves_figure(curves, {0: -5.0}, {"ga": 10}, str(tmp_path / "curves.png"))
    for fig in drawn:
        ax = fig.axes[0]
        lines = {line.get_label(): (line.get_color(), line.get_marker()) for line in ax.get_lines()
                 if line.get_label().split(" ")[0] in samplers}
        assert len(lines) == len(samplers) and len(set(lines.values())) == len(samplers), lines
        assert min(np.linalg.norm(np.subtract(to_rgb(a), to_rgb(b)))
                   for (a, _), (b, _) in itertools.combinations(lines.values(), 2)) > 0.2
