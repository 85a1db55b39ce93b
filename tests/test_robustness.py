"""The attacks on forgetting (relearning, quantization) and the recovery they measure, on the tiny
model: constructed cases with a known answer, and the folds' guarantee that nothing scored is
relearned."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch

from mrd_unlearning.data.loader import forget_groups
from mrd_unlearning.models import collate, encode_sample
from mrd_unlearning.recovery import (difficulty_correlation, difficulty_tiers, pooled_recovery, recovery,
                                    robustness_comparison, robustness_verdict, run_recovery, sample_recovery,
                                    tier_table)
from mrd_unlearning.robustness import (attack, content_overlap, content_words, measure, quantized, relearn,
                                      relearning_attack, relearning_folds)
from mrd_unlearning.training import make_optimizer, train
from mrd_unlearning.unlearning import gradient_ascent

from .conftest import MAX_LENGTH, fitted_model

MEASURE = dict(max_length=MAX_LENGTH, max_new_tokens=6, batch_size=8, device="cpu", max_wrong_answers=2)


@pytest.fixture(scope="module")
def target(tokenizer, study_data, forget_encoded):
    """Fitted, with layers wide enough for int4's groups of 32 weights."""
    return fitted_model(tokenizer, study_data, forget_encoded, hidden=32)


@pytest.fixture(scope="module")
def unlearned(target, tokenizer, forget_encoded):
    """The target after a few gradient-ascent steps on the forget set."""
    model = copy.deepcopy(target).train()
    batch = collate(forget_encoded, tokenizer.pad_token_id)
    train(model, lambda step: batch, lambda m, b: gradient_ascent(m, {"forget": b}),
          make_optimizer("sgd", model.parameters(), 0.5), 3)
    return model.eval()


@pytest.mark.parametrize("n_folds", [2, 3])
def test_the_relearning_set_never_holds_a_sample_it_is_scored_on(n_folds):
    groups = np.repeat(["a", "b", "c", "d", "e"], [4, 3, 1, 6, 2])
    folds = relearning_folds(groups, seed=3, n_folds=n_folds)
    assert len(folds) == n_folds
    scored = np.concatenate([s for _, s in folds])
    assert sorted(scored) == list(range(len(groups)))  # every sample scored exactly once
    for relearned, scored in folds:
        assert not set(relearned) & set(scored)
        assert sorted([*relearned, *scored]) == list(range(len(groups)))
        for g in ("a", "d"):  # a group of 4 or 6: part relearned, part scored, in every fold
            assert (groups[relearned] == g).any() and (groups[scored] == g).any()
    again = relearning_folds(groups, seed=3, n_folds=n_folds)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))  # seeded
    other = relearning_folds(groups, seed=4, n_folds=n_folds)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
    with pytest.raises(ValueError, match="folds must be at least 2"):
        relearning_folds(groups, seed=0, n_folds=1)


def test_recovery_by_hand():
    before, unlearned = np.array([-1.0, -1.0, -2.0, -0.5]), np.array([-3.0, -2.0, -2.0, -1.5])
    attacked = np.array([-2.0, -2.0, -1.0, -0.5])
    r = recovery(before, unlearned, attacked, min_drop=0.1)
    assert r[0] == 0.5 and r[1] == 0.0 and np.isnan(r[2]) and r[3] == 1.0  # sample 2: unlearning moved nothing
    assert pooled_recovery(before, unlearned, attacked, min_drop=0.1) == pytest.approx((1 + 0 + 1 + 1) / (2 + 1 + 0 + 1))
    # changes that cancel out: nothing to pool
    assert np.isnan(pooled_recovery([0.0, 0.0], [-1.0, 1.0], [0.0, 0.0], min_drop=0.1))


def test_recovery_is_0_when_the_attack_changes_nothing_and_1_when_it_restores_the_weights(
        target, unlearned, tokenizer, study_data):
    rows = study_data.forget_eval
    before = measure(target, tokenizer, rows, **MEASURE)
    after = measure(unlearned, tokenizer, rows, **MEASURE)
    drop = (before.loglik - after.loglik).to_numpy()
    assert (drop > 0.05).all()  # unlearning moved every sample
    kw = dict(steps=0, lr=1e-2, batch_size=4, optimizer="adamw", folds=2, seed=0, device="cpu",
              max_length=MAX_LENGTH, max_new_tokens=6, max_wrong_answers=2)
    unchanged = relearning_attack(unlearned, tokenizer, rows, forget_groups(study_data), **kw)
    for measure_name in ("loglik", "truth_ratio"):
        r = recovery(before[measure_name], after[measure_name], unchanged[measure_name], min_drop=1e-3)
        assert np.nanmax(np.abs(r)) < 1e-5  # 0, up to float rounding (folds batch other samples together)
    restored = measure(target, tokenizer, rows, **MEASURE)  # an "attack" that restores the target's weights
    r = recovery(before.loglik, after.loglik, restored.loglik, min_drop=1e-3)
    np.testing.assert_allclose(r, 1.0, atol=1e-9)


def test_relearning_brings_back_what_it_relearns_and_restarts_every_fold_from_the_given_weights(
        target, unlearned, tokenizer, study_data):
    rows, groups = study_data.forget_eval, forget_groups(study_data)
    weights = {k: v.clone() for k, v in unlearned.state_dict().items()}
    kw = dict(steps=20, lr=1e-2, batch_size=4, optimizer="adamw", folds=2, seed=0, device="cpu",
              max_length=MAX_LENGTH, max_new_tokens=6, max_wrong_answers=2)
    attacked = relearning_attack(unlearned, tokenizer, rows, groups, **kw)
    assert all(torch.equal(v, unlearned.state_dict()[k]) for k, v in weights.items())  # left as given
    assert sorted(attacked.sample_id) == list(range(len(rows))) and set(attacked.fold) == {0, 1}
    # fold 1 by hand, from the given weights: the same measures as within the attack (a fold that
    # started from fold 0's relearned weights would differ)
    relearned, scored = relearning_folds(groups, seed=0, n_folds=2)[1]
    model = copy.deepcopy(unlearned)
    relearn(model, [encode_sample(tokenizer, rows[i], MAX_LENGTH) for i in relearned], steps=20, lr=1e-2,
            batch_size=4, optimizer="adamw", seed=0 + 1, pad_id=tokenizer.pad_token_id, device="cpu")
    by_hand = measure(model, tokenizer, [rows[i] for i in scored], **MEASURE)
    within = attacked[attacked.fold == 1].set_index("sample_id").loc[scored]
    np.testing.assert_allclose(within.loglik.to_numpy(), by_hand.loglik.to_numpy(), rtol=0, atol=1e-5)
    before = measure(target, tokenizer, rows, **MEASURE)
    after = measure(unlearned, tokenizer, rows, **MEASURE)
    r = pooled_recovery(before.loglik, after.loglik, attacked.loglik, min_drop=1e-3)
    assert r > 0.2  # relearning half of each person's facts brings the other half back


def test_8_bit_quantization_barely_changes_the_likelihoods_and_4_bit_changes_them_more(target, tokenizer, study_data):
    """The sanity check of the quantization attack, on the fitted target: int8 weights move the
    forget likelihoods by less than 0.02 nats per token, int4 (groups of 32) by clearly more."""
    rows = study_data.forget_eval
    full = measure(target, tokenizer, rows, **MEASURE).loglik.to_numpy()
    change = {bits: np.abs(measure(quantized(target, bits), tokenizer, rows, **MEASURE).loglik.to_numpy() - full).max()
              for bits in (8, 4)}
    assert change[8] < 0.02
    assert change[4] > 2 * change[8] and change[4] > 0.01
    assert all(p.dtype == torch.float32 for p in target.parameters())  # the model itself is not touched
    with pytest.raises(ValueError, match="takes \\[8, 4\\]"):
        quantized(target, 2)


def test_tiers_split_each_run_in_thirds_and_their_counts_add_up_to_the_forget_set():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(20), 1)  # ties
    scores[3] = np.nan
    tiers = difficulty_tiers(scores, seed=0)
    assert tiers[3] == -1 and sorted(np.bincount(tiers[tiers >= 0])) == [6, 6, 7]
    s, t = scores[tiers >= 0], tiers[tiers >= 0]  # a harder (higher) score is never in a lower tier
    assert all(t[s < x].max(initial=0) <= t[s == x].min() for x in np.unique(s))
    tied = difficulty_tiers(np.zeros(12), seed=1)
    assert np.bincount(tied).tolist() == [4, 4, 4] and (tied != np.sort(tied)).any()  # ties: at random, not by row
    samples = pd.DataFrame({"run": np.repeat([0, 1, 2, 3], 20), "arm": np.repeat(["u", "u", "m", "m"], 20),
                            "attack": "relearn", "recovery": rng.random(80), "mrd": rng.random(80)})
    samples.loc[samples.index % 7 == 0, "recovery"] = np.nan  # undefined recovery still counts in its tier
    table = tier_table(samples, ["mrd"])
    assert (table.groupby("arm").n_samples.sum() == 40).all() and set(table.n_runs) == {2}
    assert table.groupby("arm").n_defined.sum().sum() == samples.recovery.notna().sum()


def _simulated_runs(rng, rho, n_replicates=4, n_seeds=2, n=30):
    rows = []
    for replicate in range(n_replicates):
        difficulty = rng.normal(size=n)
        for seed in range(n_seeds):
            for arm in ("uniform", "mrd"):
                noise = rng.normal(size=n)
                rows.append(pd.DataFrame({"replicate": replicate, "seed": seed, "arm": arm, "attack": "relearn",
                                          "mrd": difficulty, "recovery": rho * difficulty + np.sqrt(1 - rho ** 2) * noise}))
    return pd.concat(rows, ignore_index=True)


def test_difficulty_correlation_keeps_its_level_under_no_effect_and_finds_a_planted_one():
    """The decision rule on simulated studies (8 replicate x seed units of 30 samples): with no
    relation between difficulty and recovery it says supported or contradicted in at most a few
    of 100; with a planted rho of 0.3 it says supported in most."""
    rng = np.random.default_rng(0)
    null = [difficulty_correlation(_simulated_runs(rng, 0.0), ["mrd"]).iloc[0].verdict for _ in range(100)]
    false_rate = np.mean([v in ("supported", "contradicted") for v in null])
    planted = [difficulty_correlation(_simulated_runs(rng, 0.3), ["mrd"]).iloc[0].verdict for _ in range(100)]
    assert false_rate <= 0.08
    assert np.mean([v == "supported" for v in planted]) >= 0.8
    table = difficulty_correlation(_simulated_runs(rng, 0.3), ["mrd"])
    assert list(table.arm) == ["all", "uniform", "mrd"] and (table.verdict[table.arm != "all"] == "").all()


def test_every_attack_on_a_model_in_memory_gives_each_sample_its_recovery(target, unlearned, tokenizer, study_data):
    rows = study_data.forget_eval
    weights = {k: v.clone() for k, v in unlearned.state_dict().items()}
    attacked = attack(unlearned, tokenizer, rows, forget_groups(study_data), seed=0, device="cpu",
                      relearning={"steps": [5, 20], "lr": 1e-2, "batch_size": 4, "optimizer": "adamw", "folds": 2},
                      quantization={"bits": [8, 4], "group_size": 32}, max_length=MAX_LENGTH, max_new_tokens=6,
                      max_wrong_answers=2)
    assert all(torch.equal(v, unlearned.state_dict()[k]) for k, v in weights.items())
    assert attacked.attack.value_counts().to_dict() == {"relearn@5": len(rows), "relearn@20": len(rows),
                                                        "int8": len(rows), "int4": len(rows)}
    # measured along the way at 5 steps, the relearning run goes on as one run of 20 steps
    alone = relearning_attack(unlearned, tokenizer, rows, forget_groups(study_data), steps=20, lr=1e-2, batch_size=4,
                              optimizer="adamw", folds=2, seed=0, device="cpu", max_length=MAX_LENGTH,
                              max_new_tokens=6, max_wrong_answers=2)
    np.testing.assert_allclose(attacked[attacked.attack == "relearn@20"].loglik.to_numpy(), alone.loglik.to_numpy(),
                               rtol=0, atol=1e-6)
    attacked = attacked[attacked.attack != "relearn@5"].replace({"attack": {"relearn@20": "relearn"}})
    before = measure(target, tokenizer, rows, **MEASURE).assign(sample_id=range(len(rows)))
    after = measure(unlearned, tokenizer, rows, **MEASURE).assign(sample_id=range(len(rows)))
    samples = sample_recovery(before, after, attacked, min_drop=1e-3)
    assert len(samples) == 3 * 3 * len(rows) and set(samples.measure) == {"loglik", "truth_ratio", "rouge_l"}
    one = samples[(samples.attack == "relearn") & (samples.measure == "loglik")].set_index("sample_id")
    by_hand = (one.attacked - one.unlearned) / (one.before - one.unlearned)
    np.testing.assert_allclose(one.recovery, by_hand)
    runs = run_recovery(samples, min_drop=1e-3).set_index(["attack", "measure"]).recovery
    assert runs["relearn", "loglik"] > 0.2 and abs(runs["int8", "loglik"]) < 0.05  # int8 keeps the forgetting


def _simulated_pairs(rng, effect, n_replicates=4, n_seeds=2):
    rows = []
    for replicate in range(n_replicates):
        for seed in range(n_seeds):
            shared = rng.normal(0.4, 0.1)  # the pair's model and sample order
            for sampler in ("uniform", "mrd"):
                for attack_name in ("relearn", "int8", "int4"):
                    rows.append({"replicate": replicate, "seed": seed, "algorithm": "ga", "sampler": sampler,
                                 "attack": attack_name, "recovery": shared + rng.normal(0, 0.05)
                                 + (effect if sampler == "mrd" else 0.0)})
    return pd.DataFrame(rows)


def test_the_robustness_comparison_keeps_its_level_under_no_effect_and_finds_a_planted_one():
    """C4, robustly, on simulated studies of 8 pairs and 3 attacks (Holm over the 3): with no
    difference between MRD weighting and uniform it names one in at most a few of 100 studies;
    with MRD runs recovering 0.15 more it says `less robust` on every attack in most."""
    rng = np.random.default_rng(0)
    null = [robustness_comparison(_simulated_pairs(rng, 0.0)) for _ in range(100)]
    false_rate = np.mean([robustness_verdict(t.word) in ("supported", "contradicted", "mixed") for t in null])
    assert false_rate <= 0.08
    assert set(null[0].holm_family_size) == {3} and np.isfinite(null[0].mde).all()
    planted = [robustness_comparison(_simulated_pairs(rng, 0.15)) for _ in range(100)]
    assert np.mean([(t.word == "less robust").all() for t in planted]) >= 0.8
    assert np.mean([robustness_verdict(t.word) == "supported" for t in planted]) >= 0.8
    assert robustness_verdict(["less robust", "more robust"]) == "mixed"
    assert robustness_verdict(["equivalent"] * 3) == "no effect of interesting size"
    assert robustness_verdict(["equivalent", "unclear"]) == "inconclusive"


def test_the_recovery_figure_draws_every_attack(tmp_path):
    from mrd_unlearning.figures import recovery_tiers_figure

    rng = np.random.default_rng(1)
    samples = pd.concat([pd.DataFrame({"run": run, "arm": arm, "attack": attack, "recovery": rng.random(12),
                                       "mrd": rng.random(12)})
                         for run, arm in enumerate(["ga/uniform", "ga/uniform", "ga/mrd", "ga/mrd"])
                         for attack in ("relearn", "int4")], ignore_index=True)
    path = tmp_path / "tiers.png"
    recovery_tiers_figure(tier_table(samples, ["mrd"]), "mrd", str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_folds_across_groups_never_relearn_a_scored_samples_group_and_overlap_is_counted_by_hand():
    groups = np.repeat(["a", "b", "c", "d", "e"], 4)
    folds = relearning_folds(groups, seed=1, n_folds=2, across_groups=True)
    assert sorted(np.concatenate([scored for _, scored in folds]).tolist()) == list(range(20))
    for relearned, scored in folds:
        assert not set(groups[relearned]) & set(groups[scored])
    with pytest.raises(ValueError, match="at least 3 groups, got 2"):
        relearning_folds(groups[:8], seed=0, n_folds=3, across_groups=True)
    rows = [{"question": "q", "answer": "Paris is the capital"}, {"question": "q", "answer": "the capital of Peru"},
            {"text": "Lima in Peru"}]
    share = content_overlap(rows, [(np.array([0]), np.array([1, 2])), (np.array([1]), np.array([0]))])
    # content words: {paris, capital}, {capital, peru}, {lima, peru}; fold 0 taught {paris, capital}
    assert share.tolist() == [1 / 2, 1 / 2, 0.0]
    assert content_words("The Author of his books") == {"author", "books"}


def test_a_lora_model_quantizes_as_its_merged_weights_and_group_sizes_are_checked(target, tokenizer, study_data):
    from mrd_unlearning.models import with_lora, without_lora

    lora = with_lora(copy.deepcopy(target), {"r": 4, "alpha": 8, "dropout": 0.0,
                                             "target_modules": ["q_proj", "v_proj"]})
    for p in lora.parameters():  # adapters that change the outputs
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    merged = without_lora(copy.deepcopy(lora))
    rows = study_data.forget_eval
    for size in (32,):  # (the tiny model's 32-wide layers hold one group of 32)
        a = measure(quantized(lora, 4, group_size=size), tokenizer, rows, **MEASURE).loglik.to_numpy()
        b = measure(quantized(merged, 4, group_size=size), tokenizer, rows, **MEASURE).loglik.to_numpy()
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert hasattr(lora, "merge_and_unload")  # the model given is left wrapped
    with pytest.raises(ValueError, match=r"group_size takes \[32, 64, 128\], got 48"):
        quantized(target, 4, group_size=48)


def test_recovery_thresholds_per_measure_and_the_truth_ratio_on_a_log_scale():
    before = pd.DataFrame({"sample_id": [0, 1], "loglik": [-1.0, -1.0], "truth_ratio": [0.8, 0.8], "rouge_l": [1.0, 1.0]})
    unlearned = before.assign(loglik=[-2.0, -1.02], truth_ratio=[0.2, 0.2], rouge_l=[0.5, 0.5])
    attacked = unlearned.assign(attack="relearn", loglik=[-1.5, -1.0], truth_ratio=[0.4, 0.8], rouge_l=[0.75, 0.5])
    table = sample_recovery(before, unlearned, attacked).set_index(["measure", "sample_id"]).recovery
    assert table["loglik", 0] == pytest.approx(0.5) and np.isnan(table["loglik", 1])  # 0.02 nats: under 0.05
    assert table["truth_ratio", 0] == pytest.approx(np.log(0.4 / 0.2) / np.log(0.8 / 0.2))  # 0.5 on the log scale
    assert table["truth_ratio", 1] == pytest.approx(1.0) and table["rouge_l", 0] == pytest.approx(0.5)
    strict = sample_recovery(before, unlearned, attacked, min_drop={"loglik": 0.01, "truth_ratio": 2.0, "rouge_l": 0.1})
    strict = strict.set_index(["measure", "sample_id"]).recovery
    assert strict["loglik", 1] == pytest.approx(1.0) and np.isnan(strict["truth_ratio", 0])
    with pytest.raises(ValueError, match="no threshold for 'loglik'"):
        sample_recovery(before, unlearned, attacked, min_drop={"rouge_l": 0.1})


def test_the_retain_model_control_gains_little_on_answers_it_never_saw_and_recovery_is_read_beyond_it(
        target, unlearned, tokenizer, study_data):
    """Relearning also teaches: the same folds and budget on a model never trained on the forget
    set (the retain model) measure what relearning brings on its own. Relearning other people's
    facts (folds across groups) barely moves a model that already knows the format on facts it
    never saw, next to what unlearning removed; the run's recovery is then read beyond it."""
    from mrd_unlearning.models import encode_qa
    from mrd_unlearning.recovery import beyond_control, control_changes

    from .conftest import tiny_model

    control = tiny_model(tokenizer, seed=0, hidden=32)
    data = [encode_qa(tokenizer, r["question"], r["answer"], MAX_LENGTH) for r in study_data.retain]
    gen = torch.Generator().manual_seed(0)
    train(control, lambda step: collate([data[i] for i in torch.randint(len(data), (8,), generator=gen)],
                                        tokenizer.pad_token_id),
          lambda m, b: m(**b).loss, make_optimizer("adamw", control.parameters(), 1e-2), 60)
    control.eval()
    rows, groups = study_data.forget_eval, forget_groups(study_data)
    kw = dict(steps=[5, 20], lr=1e-3, batch_size=4, optimizer="adamw", folds=2, seed=0, device="cpu",
              max_length=MAX_LENGTH, max_new_tokens=6, max_wrong_answers=2, across_groups=True)
    on_control = relearning_attack(control, tokenizer, rows, groups, **kw)
    on_unlearned = relearning_attack(unlearned, tokenizer, rows, groups, **kw)
    assert on_control.set_index(["steps", "sample_id"]).fold.equals(on_unlearned.set_index(["steps", "sample_id"]).fold)
    name = lambda t: t.assign(attack=[f"relearn@{s}" for s in t.steps])  # noqa: E731
    before = measure(target, tokenizer, rows, **MEASURE).assign(sample_id=range(len(rows)))
    never = measure(control, tokenizer, rows, **MEASURE).assign(sample_id=range(len(rows)))
    after = measure(unlearned, tokenizer, rows, **MEASURE).assign(sample_id=range(len(rows)))
    assert (before.loglik - never.loglik).mean() > 0.5  # the target knows the forget set, the control does not
    samples = sample_recovery(before, after, name(on_unlearned), min_drop=1e-3)
    changes = control_changes(never, name(on_control))
    one = changes[(changes.attack == "relearn@20") & (changes.measure == "loglik")].set_index("sample_id")
    by_hand = on_control[on_control.steps == 20].set_index("sample_id").loglik - never.set_index("sample_id").loglik
    np.testing.assert_allclose(one.change, by_hand.reindex(one.index), atol=1e-9)
    table = beyond_control(samples, changes, min_drop=1e-3).set_index(["attack", "measure"])
    row = table.loc[("relearn@20", "loglik")]
    drop = (before.loglik - after.loglik).sum()
    assert row.control_recovery == pytest.approx(one.change.sum() / drop)
    assert abs(row.control_recovery) < 0.1, row.control_recovery  # near 0: nothing of these answers was taught
    assert row.beyond_control == pytest.approx(row.recovery - row.control_recovery)
    assert on_control.overlap.between(0, 1).all()


def test_the_rules_calibration_reads_the_studys_holm_family():
    """The difficulty-recovery rule simulated as one test of the study's family: 9 (replicate, seed)
    units give a smallest sign-flip p of 2/512, so a family of 15 can never reject (power 0 at any
    rho), while a family of 1 finds rho 0.3 nearly always; the comparison rule runs on the study's
    own pairs, and under no effect neither rule says anything but no effect or inconclusive often."""
    from mrd_unlearning.recovery import calibrate_rules

    keys = [(r, s, a) for r in range(3) for s in range(3) for a in ("ga/uniform", "ga/mrd")]
    samples = pd.DataFrame([{"replicate": r, "seed": s, "arm": a, "sample_id": i}
                            for r, s, a in keys for i in range(30)])
    runs = pd.DataFrame([{"replicate": r, "seed": s, "algorithm": "ga", "sampler": a.split("/")[1],
                          "attack": "relearn@10", "recovery": 0.5 + 0.05 * np.sin(r + 3 * s)} for r, s, a in keys])
    kw = dict(alpha=0.05, power=0.8, smallest_rho=0.3, smallest=0.1, simulations=40, power_simulations=20)
    alone = calibrate_rules(samples, runs, correlation_family=1, **kw).set_index(["rule", "condition"])
    family = calibrate_rules(samples, runs, correlation_family=15, **kw).set_index(["rule", "condition"])
    assert alone.loc[("difficulty-recovery", "smallest effect"), "rate"] >= 0.9
    assert family.loc[("difficulty-recovery", "smallest effect"), "rate"] == 0  # 15 x 2/512 > 0.05
    assert family.loc[("difficulty-recovery", "smallest effect"), "holm_family_size"] == 15
    for table in (alone, family):
        assert table.xs("no effect", level="condition").rate.max() <= 0.1
