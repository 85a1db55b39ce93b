import numpy as np
import pandas as pd
import pytest
import torch

from mrd_unlearning.ground_truth import curves_table, fractional_crossing, required_updates
from mrd_unlearning.models import encode_qa
from mrd_unlearning.mrd import score_loglik
from mrd_unlearning.training import finetune, memorization_accuracy
from mrd_unlearning.unlearning import unlearn

from .conftest import MAX_LENGTH, tiny_model


def _finetuned(tokenizer, encoded, epochs=60):
    model = tiny_model(tokenizer, hidden=32)
    history = finetune(model, encoded, lr=0.01, weight_decay=0.0, batch_size=4, max_epochs=epochs,
                       memorization_accuracy_target=0.9, seed=0, pad_id=tokenizer.pad_token_id, device="cpu",
                       desc=None)
    return model, history


def test_finetune_stops_at_memorisation_criterion(tokenizer, forget_encoded):
    model, history = _finetuned(tokenizer, forget_encoded)
    accs = [h["answer_token_accuracy"] for h in history]
    assert accs[-1] >= 0.9 and all(a < 0.9 for a in accs[:-1])  # stopped at the first epoch that met it
    assert memorization_accuracy(model, forget_encoded, 8, tokenizer.pad_token_id, "cpu") == accs[-1]


def test_finetune_is_deterministic(tokenizer, forget_encoded):
    a, ha = _finetuned(tokenizer, forget_encoded, epochs=3)
    b, hb = _finetuned(tokenizer, forget_encoded, epochs=3)
    assert ha == hb
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_required_updates_zero_at_level_and_cap_honoured(tokenizer, forget_encoded):
    model = tiny_model(tokenizer)
    level_now = score_loglik(model, forget_encoded[:2], 8, tokenizer.pad_token_id, "cpu")
    counts = required_updates(model, forget_encoded[:2], np.array([level_now[0] + 1.0, -1e9]), optimizer="adamw",
                              lr=1e-3, max_steps=7, pad_id=tokenizer.pad_token_id, device="cpu", desc=None)
    assert counts.update_count.tolist() == [0, 7]
    assert counts.censored.tolist() == [False, True]
    # the model is left as it was
    assert np.array_equal(level_now, score_loglik(model, forget_encoded[:2], 8, tokenizer.pad_token_id, "cpu"))


def test_required_updates_count_is_first_step_at_level(tokenizer, forget_encoded):
    model = tiny_model(tokenizer)
    start = score_loglik(model, forget_encoded[:1], 8, tokenizer.pad_token_id, "cpu")[0]
    counts = required_updates(model, forget_encoded[:1], np.array([start - 0.5]), optimizer="sgd", lr=0.5,
                              max_steps=50, pad_id=tokenizer.pad_token_id, device="cpu", desc=None)
    n = int(counts.update_count[0])
    assert 0 < n < 50 and not counts.censored[0]


def test_the_recorded_curve_gives_back_the_count_and_the_crossing(tokenizer, forget_encoded):
    """The curves the browser draws are the ones the stopping rule read: the first point is the
    sample's likelihood before any update, the count is the first update at the level, the
    fractional crossing and the censoring follow from the table alone."""
    model = tiny_model(tokenizer)
    start = score_loglik(model, forget_encoded[:3], 8, tokenizer.pad_token_id, "cpu")
    level = np.array([start[0] - 0.3, start[1] - 0.6, -1e9])
    counts = required_updates(model, forget_encoded[:3], level, optimizer="sgd", lr=0.5, max_steps=12,
                              pad_id=tokenizer.pad_token_id, device="cpu", desc=None)
    table = curves_table(counts, level)
    assert list(table.columns) == ["sample_id", "updates", "loglik", "retain_level"]
    for row in counts.itertuples():
        mine = table[table.sample_id == row.sample_id].sort_values("updates")
        assert mine.updates.tolist() == list(range(len(mine)))
        assert mine.loglik.iloc[0] == pytest.approx(start[row.sample_id], abs=1e-5)
        assert (mine.retain_level == level[row.sample_id]).all()
        below = np.flatnonzero(mine.loglik.to_numpy() <= level[row.sample_id])
        assert row.censored == (len(below) == 0) and len(mine) == row.update_count + 1
        assert row.update_count == (12 if row.censored else below[0])
        assert fractional_crossing(mine.loglik.tolist(), level[row.sample_id], 12) == row.update_count_frac
    assert counts.censored.tolist()[2] and len(table) == counts.update_count.sum() + 3


def _run(tokenizer, study_data, forget_encoded, sampler, seed):
    model = tiny_model(tokenizer)
    retain = [encode_qa(tokenizer, r["question"], r["answer"], MAX_LENGTH) for r in study_data.retain_eval]
    drop = np.linspace(0.1, 1.0, len(forget_encoded))
    return unlearn(model, forget_encoded, retain, retain, algorithm="ga", sampler=sampler, drop=drop, steps=6, batch_size=2,
                   lr=1e-2, optimizer="adamw", tau=1.0, seed=seed, log_every=2, pad_id=tokenizer.pad_token_id,
                   device="cpu")


def test_gradient_ascent_lowers_forget_likelihood_and_is_deterministic(tokenizer, study_data, forget_encoded):
    curve, _ = _run(tokenizer, study_data, forget_encoded, "mrd", seed=0)
    assert curve.step.tolist() == [0, 2, 4, 6]
    assert curve.forget_loglik.iloc[-1] < curve.forget_loglik.iloc[0]
    again, _ = _run(tokenizer, study_data, forget_encoded, "mrd", seed=0)
    pd.testing.assert_frame_equal(curve, again)
    other, _ = _run(tokenizer, study_data, forget_encoded, "uniform", seed=0)
    assert not np.allclose(curve.forget_loglik.iloc[1:], other.forget_loglik.iloc[1:])


def test_learning_rate_schedule():
    from mrd_unlearning.training import lr_lambda

    linear = lr_lambda("linear", warmup_steps=2, total_steps=10)
    assert [linear(s) for s in range(10)] == pytest.approx([0.5, 1.0, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    constant = lr_lambda("constant", warmup_steps=0, total_steps=10)
    assert [constant(s) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="cosine"):
        lr_lambda("cosine", 0, 10)



def test_fractional_crossing_by_hand():
    from mrd_unlearning.ground_truth import fractional_crossing

    curve = [-1.0, -1.5, -2.5, -3.0]
    assert fractional_crossing(curve, -2.0, cap=10) == pytest.approx(1.5)  # between steps 1 and 2
    assert fractional_crossing(curve, -2.5, cap=10) == pytest.approx(2.0)  # exactly at step 2
    assert fractional_crossing(curve, -1.1, cap=10) == pytest.approx(0.2)  # (−1 − −1.1) / (−1 − −1.5)
    assert fractional_crossing(curve, -9.0, cap=10) == 10.0  # never: the cap (censored)
    assert fractional_crossing(curve, -0.5, cap=10) == 0.0  # already below at step 0


def test_fractional_count_lies_within_its_integer_step(tokenizer, forget_encoded):
    model = tiny_model(tokenizer)
    start = score_loglik(model, forget_encoded[:3], 8, tokenizer.pad_token_id, "cpu")
    counts = required_updates(model, forget_encoded[:3], start - 0.5, optimizer="sgd", lr=0.5, max_steps=50,
                              pad_id=tokenizer.pad_token_id, device="cpu", desc=None)
    for r in counts.itertuples():
        assert r.update_count - 1 < r.update_count_frac <= r.update_count
