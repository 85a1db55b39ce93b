"""The difficulty scores beside MRD against hand computations: learning events on a recorded
sequence, entanglement on points with known centroids, memorization from two models'
likelihoods, the third-party MRD reading, and the learning events fine-tuning records."""
import numpy as np
import pandas as pd
import pytest
import torch

from mrd_unlearning.difficulty import (SCORES, difficulty_table, entanglement, harder_when_higher,
                                       learning_event_scores)
from mrd_unlearning.models import encode_qa
from mrd_unlearning.mrd import perturbation_seed, thirdparty_drop, token_logliks
from mrd_unlearning.training import finetune

from .conftest import MAX_LENGTH, tiny_model


def test_learning_events_from_a_recorded_sequence():
    learned = {0: [0, 1, 1, 0, 1], 1: [0, 0, 0, 0, 0], 2: [1, 1, 1, 1, 1], 3: [1, 0, 1, 0, 0]}
    probability = {0: [0.1, 0.5, 0.6, 0.4, 0.9], 1: [0.1] * 5, 2: [0.8] * 5, 3: [0.5, 0.2, 0.6, 0.3, 0.4]}
    events = pd.DataFrame([{"epoch": e + 1, "sample_id": i, "probability": probability[i][e], "learned": bool(v)}
                           for i, seq in learned.items() for e, v in enumerate(seq)]).sample(frac=1, random_state=0)
    scores = learning_event_scores(events).set_index("sample_id")
    assert scores.forgetting_events.tolist() == [1, 0, 0, 2]
    assert scores.epoch_learned.tolist() == [2, 6, 1, 1]  # sample 1 never: the last epoch + 1
    assert np.allclose(scores.learning_confidence, [0.5, 0.1, 0.8, 0.4])


def test_entanglement_on_points_with_known_centroids():
    forget = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0], [1.0, -3.0]])  # centroid (1, 0)
    retain = np.array([[4.0, 0.0], [6.0, 0.0]])  # centroid (5, 0)
    expected = [1 / 5, 1 / 3, 3 / 5, 3 / 5]  # e.g. (1, 3): 3 from (1, 0), 5 from (5, 0)
    assert np.allclose(entanglement(forget, retain), expected)
    # a sample nearer the retain centroid than its own set's scores above 1
    assert entanglement(np.array([[0.0, 0.0], [0.0, 0.0], [4.0, 0.0]]), retain)[2] > 1


def test_memorization_and_the_oracle_from_two_models(tmp_path):
    pd.DataFrame({"sample_id": [1, 0], "loss": [0.5, 0.1], "grad_norm": [1.0, 2.0]}).to_csv(tmp_path / "b.csv",
                                                                                             index=False)
    pd.DataFrame({"split": ["forget", "forget", "retain"], "sample_id": [1, 0, 0],
                  "loglik": [-2.0, -3.0, -0.1]}).to_csv(tmp_path / "r.csv", index=False)
    table = difficulty_table(str(tmp_path / "b.csv"), str(tmp_path / "r.csv"), str(tmp_path / "absent.csv"))
    # L_target - L_retain = -loss - L_retain: sample 0: -0.1 + 3, sample 1: -0.5 + 2
    assert table.sample_id.tolist() == [0, 1] and np.allclose(table.memorization, [2.9, 1.5])
    assert np.allclose(table.retain_model_loss_oracle, [3.0, 2.0]) and "learning_confidence" not in table
    assert harder_when_higher("memorization") and not harder_when_higher("loss")
    with pytest.raises(ValueError, match="allowed"):
        harder_when_higher("nope")
    assert {kind for kind, _ in SCORES.values()} >= {"baseline", "oracle", "learning events", "entanglement"}


def test_thirdparty_reading_against_a_hand_computation(tokenizer, forget_encoded):
    model = tiny_model(tokenizer)
    before = [p.detach().clone() for p in model.parameters()]
    kw = dict(batch_size=4, pad_id=tokenizer.pad_token_id, device="cpu")
    got = thirdparty_drop(model, forget_encoded, sigma=1e-3, K=2, seed=5, **kw)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # restored bit-exactly
    base = token_logliks(model, forget_encoded, **kw)
    relative = []
    for k in range(2):
        perturbed = tiny_model(tokenizer)
        gen = torch.Generator().manual_seed(perturbation_seed(5, k))
        with torch.no_grad():
            for p in perturbed.parameters():
                p.add_(torch.randn(p.shape, generator=gen), alpha=1e-3)
        new = token_logliks(perturbed, forget_encoded, **kw)
        relative.append(np.nansum(np.abs(base - new) / np.abs(base), axis=1))
    assert np.allclose(got, np.mean(relative, axis=0), rtol=1e-9)
    assert np.isnan(base).any() and (got > 0).all()  # ragged answers; every sample moved


def test_finetuning_records_the_tracked_samples_learning_events(tokenizer, study_data, forget_encoded):
    encoded = forget_encoded + [encode_qa(tokenizer, r["question"], r["answer"], MAX_LENGTH)
                                for r in study_data.retain]
    model = tiny_model(tokenizer, seed=0, hidden=32)
    history = finetune(model, encoded, lr=1e-2, weight_decay=0.0, batch_size=8, max_epochs=4,
                       memorization_accuracy_target=None, seed=0, pad_id=tokenizer.pad_token_id, device="cpu",
                       desc=None, track=list(range(3)))
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    last = history[-1]["tracked"]
    assert len(last["probability"]) == 3 and all(0 < p < 1 for p in last["probability"])
    with torch.no_grad():  # the probability is exp(mean answer log-likelihood) of the final model
        from mrd_unlearning.mrd import score_loglik
        assert np.allclose(last["probability"], np.exp(score_loglik(model, forget_encoded[:3], 8,
                                                                    tokenizer.pad_token_id, "cpu")), rtol=1e-6)


def test_sample_characteristics_by_hand():
    from mrd_unlearning.difficulty import group_difficulty, name_share, numeric_share, token_rarity

    assert numeric_share("Bala Kor was born in 1962 on 3 May.") == pytest.approx(3 / 9)  # 1962, 3, May
    assert numeric_share("") == 0.0
    # "Bala Kor was born in Threa. She writes about Lisbon." -> Kor, Threa, Lisbon of 10 words
    assert name_share("Bala Kor was born in Threa. She writes about Lisbon.") == pytest.approx(3 / 10)
    freq = {1: 0.5, 2: 0.25}
    assert token_rarity([1, 2, 2], freq) == pytest.approx((np.log(2) + 2 * np.log(4)) / 3)
    got = group_difficulty([1.0, 3.0, 5.0, 10.0], ["a", "a", "a", "b"])
    np.testing.assert_allclose(got[:3], [4.0, 3.0, 2.0])  # (3+5)/2, (1+5)/2, (1+3)/2
    assert np.isnan(got[3])  # alone in its group


def test_characteristics_from_the_tokenizer_by_hand(tokenizer):
    from mrd_unlearning.baselines import sample_characteristics
    from mrd_unlearning.models import IGNORE

    rows = [{"question": "Where was Bala Kor born?", "answer": "Bala Kor was born in 1962."},
            {"question": "Who?", "answer": "Nobody at all."}]
    encoded = [encode_qa(tokenizer, r["question"], r["answer"], 96) for r in rows]
    table = sample_characteristics(tokenizer, rows, encoded, training=encoded)
    assert list(table.question_tokens) == [len(tokenizer.encode(r["question"], add_special_tokens=False))
                                           for r in rows]
    scored = [[t for t in e.labels if t != IGNORE] for e in encoded]
    everything = scored[0] + scored[1]
    expected = [np.mean([-np.log(everything.count(t) / len(everything)) for t in ids]) for ids in scored]
    np.testing.assert_allclose(table.token_rarity, expected)
    np.testing.assert_allclose(table.numeric_share, [1 / 6, 0.0])
    np.testing.assert_allclose(table.name_share, [1 / 6, 0.0])  # "Kor" (Bala starts the sentence)
