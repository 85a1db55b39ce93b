import numpy as np
import pandas as pd
import pytest
import torch

from mrd_unlearning.baselines import cheap_scores
from mrd_unlearning.models import answer_log_likelihood, collate, token_log_probs
from mrd_unlearning.mrd import Estimator, PerturbationScorer
from scipy.stats import spearmanr

from mrd_unlearning.statistics import holm
from mrd_unlearning.variants import estimator_study
from mrd_unlearning.validation import (_spearman, partial_spearman, partial_spearman_with_ci,
                                       replicate_stability, spearman_with_ci, validation_table)


def test_spearman_ci_covers_truth_and_excludes_zero_when_strong():
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    y = x + 0.3 * rng.normal(size=60)
    strong = spearman_with_ci(x, y)
    assert strong["ci_low"] > 0.7 and strong["ci_low"] <= strong["spearman_rho"] <= strong["ci_high"]
    null = spearman_with_ci(x, rng.normal(size=60))
    assert null["ci_low"] < 0 < null["ci_high"]
    # the bootstrap is seeded: the same seed repeats the CI exactly, another seed moves only the CI
    assert spearman_with_ci(x, y) == strong
    other = spearman_with_ci(x, y, seed=3)
    assert other["spearman_rho"] == strong["spearman_rho"] and other["ci_low"] != strong["ci_low"]


def test_vectorised_spearman_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 30)), rng.integers(0, 6, size=(5, 30))  # ties, as update counts have
    assert np.allclose(_spearman(x, y), [stats.spearmanr(a, b)[0] for a, b in zip(x, y)])


def test_partial_spearman_matches_the_closed_form_for_one_covariate():
    """With one covariate the partial correlation of ranks is (r_xy - r_xc r_yc) / sqrt((1 - r_xc^2)(1 - r_yc^2))."""
    rng = np.random.default_rng(2)
    c = rng.normal(size=50)
    x, y = c + rng.normal(size=50), c + rng.normal(size=50)
    r = lambda a, b: _spearman(a, b)  # noqa: E731
    expected = (r(x, y) - r(x, c) * r(y, c)) / np.sqrt((1 - r(x, c) ** 2) * (1 - r(y, c) ** 2))
    assert partial_spearman(x, y, c[:, None]) == pytest.approx(expected, abs=1e-12)
    # x and y share only c: the marginal correlation is clearly positive, the partial one is not
    assert r(x, y) > 0.3
    result = partial_spearman_with_ci(x, y, c)
    assert result["ci_low"] < 0 < result["ci_high"] and result["p_value"] > 0.05


def _scores(n=40, seed=0, replicates=(0,)):
    """Per replicate: MRD tracks the count; loss and gradient norm are noise; the factor is shared."""
    rng = np.random.default_rng(seed)
    factor = rng.uniform(size=n)
    frames = []
    for r in replicates:
        count = rng.integers(1, 30, size=n)
        frames.append(pd.DataFrame({"replicate": r, "sample_id": np.arange(n), "update_count": count,
                                    "mrd": count + rng.normal(0, 2, n), "loss": rng.normal(size=n),
                                    "grad_norm": rng.normal(size=n), "answer_tokens": rng.integers(3, 9, n),
                                    "value_frequency": factor}))
    return pd.concat(frames, ignore_index=True)


def test_validation_table_rows_and_gap_sign():
    table = validation_table(_scores(), factor_columns=["value_frequency"], n_resamples=500)
    assert set(table.ground_truth) == {"update_count"} and set(table.replicate) == {"0", "pooled"}
    per_replicate = table[table.replicate == "0"]
    assert list(per_replicate.kind) == ["mrd", "baseline", "baseline", "baseline", "known factor", "partial"]
    mrd = per_replicate.set_index("score").loc["mrd"]
    assert mrd.spearman_rho > 0.8 and mrd.ci_low > 0.5
    loss = per_replicate.set_index("score").loc["loss"]
    assert loss.gap_ci_low > 0  # MRD ranks clearly better than a random score
    partial = per_replicate[per_replicate.kind == "partial"].iloc[0]
    assert partial.score == "mrd given loss + grad_norm" and partial.spearman_rho > 0.8
    # one replicate: the pooled rows are that replicate's values, with the sample bootstrap
    pooled = table[table.replicate == "pooled"].set_index("score")
    assert pooled.loc["mrd", "spearman_rho"] == pytest.approx(mrd.spearman_rho)
    c3 = per_replicate[per_replicate.score.isin(["value_frequency", "answer_tokens"])]
    assert list(c3.p_holm) == pytest.approx(list(holm(c3.p_value)))  # one family: answer length is in C3 too


def test_pooled_rows_average_the_replicates_and_holm_spans_the_factors():
    scores = _scores(replicates=(0, 1, 2))
    scores["answer_words"] = np.tile(np.arange(40) % 5, 3)
    table = validation_table(scores, factor_columns=["value_frequency", "answer_words"], n_resamples=500)
    mrd = table[table.score == "mrd"].set_index("replicate")
    assert mrd.loc["pooled", "spearman_rho"] == pytest.approx(mrd.loc[["0", "1", "2"], "spearman_rho"].mean())
    assert mrd.loc["pooled", "between_sd"] == pytest.approx(mrd.loc[["0", "1", "2"], "spearman_rho"].std(ddof=1))
    assert mrd.loc["pooled", "n_replicates"] == 3 and mrd.loc["pooled", "ci_low"] > 0.5
    c3 = table.kind.eq("known factor") | table.score.eq("answer_tokens")
    factors = table[c3 & (table.replicate == "1")]
    assert list(factors.p_holm) == pytest.approx(list(holm(factors.p_value)))
    assert len(factors) == 3 and table[~c3].p_holm.isna().all()


def test_replicate_stability_compares_each_sample_across_training_runs():
    rng = np.random.default_rng(3)
    difficulty = rng.normal(size=50)
    scores = pd.concat([pd.DataFrame({"replicate": r, "sample_id": np.arange(50),
                                      "update_count": difficulty + 0.3 * rng.normal(size=50),
                                      "mrd": rng.normal(size=50)}) for r in range(3)])
    table = replicate_stability(scores, ["update_count", "mrd"], n_resamples=300)
    pairs = table[(table.quantity == "update_count") & (table.replicate_a != "mean of pairs")]
    assert list(zip(pairs.replicate_a, pairs.replicate_b)) == [("0", "1"), ("0", "2"), ("1", "2")]
    mean = table[table.replicate_a == "mean of pairs"].set_index("quantity")
    assert mean.loc["update_count", "spearman_rho"] == pytest.approx(pairs.spearman_rho.mean())
    assert mean.loc["update_count", "ci_low"] > 0.6  # a property of the sample
    assert mean.loc["mrd", "ci_low"] < 0 < mean.loc["mrd", "ci_high"]  # noise: a property of the run


def test_estimator_study_uses_independent_seeds_and_every_K(model, forget_encoded, tokenizer):
    scorer = PerturbationScorer(model, forget_encoded, batch_size=4, pad_id=tokenizer.pad_token_id, device="cpu",
                                progress=False)
    main = Estimator(sigma="auto", K=4)
    drops, stability = estimator_study(scorer, main, {"abs": main.with_overrides({"statistic": "abs"})}, seed=0,
                                       retest_seed=7, sigma_grid=[0.01, 0.1, 1.0], positive_share=0.9, K_grid=[2, 8],
                                       sigma_sweep=True)
    at_K = stability[stability.sweep == "K"]
    assert list(zip(at_K.variant, at_K.K)) == [("main", 2), ("main", 4), ("abs", 2), ("abs", 4)]
    sweep = stability[stability.sweep == "sigma"]
    assert sorted(set(sweep.sigma)) == [0.01, 0.1, 1.0] and set(sweep.statistic) == {"signed", "abs"}
    # the retest set is seed 7, not a subset of seed 0
    sigma = at_K.sigma.iloc[0]
    a = scorer.drops(sigma=sigma, sigma_mode="absolute", seed=0, K=4).mean(0)
    b = scorer.drops(sigma=sigma, sigma_mode="absolute", seed=7, K=4).mean(0)
    assert at_K.retest_rho.iloc[1] == pytest.approx(float(_spearman(a, b)))
    main_drops = drops[drops.variant == "main"].sort_values("sample_id")["drop"].to_numpy()
    assert np.allclose(main_drops, a)
    abs_drops = drops[drops.variant == "abs"].sort_values("sample_id")["drop"].to_numpy()
    assert np.allclose(abs_drops, np.abs(scorer.drops(sigma=sigma, sigma_mode="absolute", seed=0, K=4)).mean(0))


def test_cheap_scores_match_direct_computation(model, forget_encoded, tokenizer):
    table = cheap_scores(model, forget_encoded, pad_id=tokenizer.pad_token_id, device="cpu", desc=None)
    params = [p for p in model.parameters() if p.requires_grad]
    for i in (0, len(forget_encoded) - 1):
        batch = collate(forget_encoded[i:i + 1], tokenizer.pad_token_id)
        loglik = answer_log_likelihood(model, batch)[0]  # with grad: the float64 path
        grads = torch.autograd.grad(-loglik, params)  # float64 path, independent of the training loss
        with torch.no_grad():
            logp, mask = token_log_probs(model, batch)
        row = table.iloc[i]
        assert row.loss == pytest.approx(-loglik.item(), rel=1e-6)
        assert row.max_token_nll == pytest.approx(float((-logp[mask]).max()), rel=1e-6)
        assert row.grad_norm == pytest.approx(float(torch.sqrt(sum((g ** 2).sum() for g in grads))), rel=1e-4)
        assert row.answer_tokens == len([t for t in forget_encoded[i].labels if t >= 0])


def test_with_enough_groups_the_correlation_is_tested_over_groups():
    """At least min_groups groups (authors): the within-group rho, tested by sign flips of its
    per-group contributions, as a hand enumeration of the 2^G patterns gives; a group-level
    association with none inside the groups is not taken for one (the sample bootstrap of the
    pooled rho, taking 72 grouped samples as independent, is)."""
    import itertools

    from .test_statistics import simulated_groups

    rng = np.random.default_rng(11)
    x, y, groups = simulated_groups(rng, 0.9, 0.8, G=12, m=6)
    scores = pd.DataFrame({"replicate": 0, "sample_id": np.arange(len(x)), "group": [f"p{g}" for g in groups],
                           "mrd": x, "update_count": y})
    grouped = validation_table(scores, [], n_resamples=500, min_groups=10)
    alone = validation_table(scores.drop(columns="group"), [], n_resamples=500)
    row = lambda t: t[(t.replicate == "pooled") & (t.score == "mrd")].iloc[0]  # noqa: E731
    assert row(grouped).n_groups == 12 and row(alone).n_groups == 72
    assert row(grouped).resampling == "group sign-flip" and row(alone).resampling == "samples"
    assert row(alone).p_value < 0.01 < row(grouped).p_value  # the group effect, not a sample-level one
    assert row(grouped).spearman_rho == pytest.approx(_spearman(x, y, blocks=[6] * 12))

    units = []  # by hand: each group's share of the within-group rho, times the number of groups
    rank = lambda v: pd.Series(v).rank().to_numpy() - (len(v) + 1) / 2  # noqa: E731
    rx = [rank(x[groups == g]) for g in range(12)]
    ry = [rank(y[groups == g]) for g in range(12)]
    norm = np.sqrt(sum((a ** 2).sum() for a in rx) * sum((b ** 2).sum() for b in ry))
    units = np.array([12 * (a * b).sum() / norm for a, b in zip(rx, ry)])
    flipped = [abs(np.mean(units * signs)) for signs in itertools.product([1, -1], repeat=12)]
    assert row(grouped).p_value == pytest.approx(np.mean(np.array(flipped) >= abs(units.mean()) - 1e-12))


def test_group_sign_flip_keeps_its_level_under_no_effect():
    """No association within groups, group effects in both variables, 12 groups of 4 in 2
    replicates: the test rejects at about alpha, and the interval excludes 0 exactly when it does."""
    from .test_statistics import simulated_groups
    from mrd_unlearning.validation import group_sign_flip

    rng = np.random.default_rng(3)
    rejected, agree = 0, 0
    for _ in range(400):
        x, y, groups = simulated_groups(rng, 0.9, 0.6, G=12, m=4)
        y2 = y + 0.5 * rng.normal(size=len(y))
        res = group_sign_flip(x[None], np.stack([y, y2]), groups)
        rejected += res["p_value"] < 0.05
        agree += (res["p_value"] < 0.05) == (res["ci_low"] > 0 or res["ci_high"] < 0)
    assert agree == 400
    assert rejected / 400 < 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / 400)


def test_with_few_groups_the_correlation_is_within_them():
    """Finding: with 2 authors the interval described no population of authors. With fewer than
    `statistics.min_groups` groups, the rho is the within-group rho and samples are resampled within their group: two
    groups that differ in both scores (a group-level association, one data point) with no
    association inside them give a large total rho but no within-group effect."""
    rng = np.random.default_rng(4)
    groups = np.repeat([0, 1], 20)
    x = 3.0 * groups + rng.normal(size=40)
    y = 3.0 * groups + rng.normal(size=40)
    assert spearmanr(x, y)[0] > 0.6
    res = spearman_with_ci(x, y, groups=groups, n_resamples=1000)
    assert res["resampling"] == "within" and abs(res["spearman_rho"]) < 0.3 and res["ci_low"] < 0 < res["ci_high"]
    inside = spearman_with_ci(x, 3.0 * groups + x + 0.3 * rng.normal(size=40), groups=groups, n_resamples=1000)
    assert inside["ci_low"] > 0.5  # an association inside the groups is found


def test_c3_does_not_test_a_variable_made_from_its_own_answer():
    """Finding: group_difficulty (the leave-one-out group mean of the count) correlates -1 with
    the count within a group, and came out 'supported' under no effect in 47% of 2-author
    simulations. It is not in C3's family."""
    rng = np.random.default_rng(5)
    scores = pd.DataFrame({"replicate": 0, "sample_id": np.arange(40), "group": np.repeat(["a", "b"], 20),
                           "mrd": rng.normal(size=40), "update_count": rng.normal(size=40),
                           "answer_tokens": rng.integers(3, 9, 40), "numeric_share": rng.uniform(size=40)})
    from mrd_unlearning.difficulty import group_difficulty

    scores["group_difficulty"] = group_difficulty(scores.update_count, scores.group)
    table = validation_table(scores, [], n_resamples=300)
    assert "group_difficulty" not in set(table.score)
    assert set(table[table.p_holm.notna()].score) == {"answer_tokens", "numeric_share"}
