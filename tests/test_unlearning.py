"""The unlearning losses against hand computations from token log-probabilities, NPO's beta -> 0
limit, and the loop's samplers and retain batches."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch

from mrd_unlearning.models import IGNORE, collate, encode_qa, token_log_probs
from mrd_unlearning.mrd import Estimator
from mrd_unlearning.unlearning import (ALGORITHMS, REFUSALS, RMU_ALPHA, RMU_STEER, SIMNPO_BETA, SIMNPO_GAMMA, WGA_BETA,
                                       _control_direction, idk_answers, npo_loss, rmu_layer, unlearn)

from .conftest import MAX_LENGTH, fitted_model, tiny_model


@pytest.fixture
def batches(tokenizer, study_data, forget_encoded):
    retain = [encode_qa(tokenizer, r["question"], r["answer"], MAX_LENGTH) for r in study_data.retain[:3]]
    idk = [encode_qa(tokenizer, r["question"], a, MAX_LENGTH)
           for r, a in zip(study_data.forget[:3], idk_answers(3, seed=0))]
    pad = tokenizer.pad_token_id
    return {"forget": collate(forget_encoded[:3], pad), "retain": collate(retain, pad), "forget_idk": collate(idk, pad)}


@pytest.fixture(scope="module")
def trained(tokenizer, study_data, forget_encoded):
    return fitted_model(tokenizer, study_data, forget_encoded)


def _hidden_np(model, batch, layer):
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    return out.hidden_states[layer][batch["attention_mask"].bool()].detach().double().numpy()


def _hand(model, batch):
    """Per-sample token log-probs (float64) and the full next-token log-distributions at answer positions."""
    logp, mask = token_log_probs(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    return logp.detach().numpy(), mask.numpy(), torch.log_softmax(logits.double(), -1)[mask].detach().numpy()


def test_losses_match_hand_computation(tokenizer, batches):
    model, reference = tiny_model(tokenizer, seed=0), tiny_model(tokenizer, seed=1)
    f_logp, f_mask, _ = _hand(model, batches["forget"])
    r_logp, r_mask, r_dist = _hand(model, batches["retain"])
    ref_f_logp, _, _ = _hand(reference, batches["forget"])
    _, _, ref_r_dist = _hand(reference, batches["retain"])
    forget_nll = -(f_logp.sum(1) / f_mask.sum(1)).mean()
    retain_nll = -(r_logp.sum(1) / r_mask.sum(1)).mean()
    kl = (np.exp(ref_r_dist) * (ref_r_dist - r_dist)).sum(-1).mean()
    ratio = f_logp.sum(1) - ref_f_logp.sum(1)
    npo = -(2 / 0.1) * np.log(1 / (1 + np.exp(0.1 * ratio))).mean()
    # SimNPO: reference-free, length-normalised, margin gamma; WGA: token weights p^beta (beta 1), detached
    beta, gamma = SIMNPO_BETA, SIMNPO_GAMMA
    length_normalised = f_logp.sum(1) / f_mask.sum(1)
    simnpo = -(2 / beta) * np.log(1 / (1 + np.exp(beta * length_normalised + gamma))).mean()
    wga = ((np.exp(f_logp) ** WGA_BETA * f_logp * f_mask).sum(1) / f_mask.sum(1)).mean()
    i_logp, i_mask, _ = _hand(model, batches["forget_idk"])
    idk_nll = -(i_logp.sum(1) / i_mask.sum(1)).mean()
    # RMU at the middle layer: forget states towards c u (c = 2 x the reference's mean norm), retain states kept
    layer = rmu_layer(model)
    h_f, h_r = _hidden_np(model, batches["forget"], layer), _hidden_np(model, batches["retain"], layer)
    ref_f, ref_r = _hidden_np(reference, batches["forget"], layer), _hidden_np(reference, batches["retain"], layer)
    u = _control_direction(h_f.shape[1]).double().numpy()
    assert np.isclose(np.linalg.norm(u), 1.0) and (u >= 0).all()
    c = RMU_STEER * np.linalg.norm(ref_f, axis=1).mean()
    rmu = (((h_f - c * u) ** 2).sum(1).mean() / c ** 2
           + RMU_ALPHA * ((h_r - ref_r) ** 2).sum(1).mean() / (ref_r ** 2).sum(1).mean())
    expected = {"ga": -forget_nll, "graddiff": -forget_nll + retain_nll, "kl": -forget_nll + kl, "npo": npo,
                "npo_rt": npo + retain_nll, "simnpo": simnpo + retain_nll, "wga": wga + retain_nll,
                "idknll": idk_nll + retain_nll, "rmu": rmu}
    assert set(expected) == set(ALGORITHMS)
    for name, loss in ALGORITHMS.items():
        assert loss(model, batches, reference).item() == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name
    assert ALGORITHMS["kl"](model, batches, model).item() == pytest.approx(-forget_nll, rel=1e-4)  # KL(p || p) = 0


def test_npo_with_small_beta_is_scaled_gradient_ascent(tokenizer, forget_encoded):
    """d/dtheta NPO = 2 sigmoid(beta r) d/dtheta log pi(y | x), r = log(pi / pi_ref): as beta -> 0 it is
    GA on the summed answer log-likelihood, i.e. GA's per-token-mean gradient times the answer length."""
    model, reference = tiny_model(tokenizer, seed=0), tiny_model(tokenizer, seed=1)
    batch = {"forget": collate(forget_encoded[:1], tokenizer.pad_token_id)}
    n_answer = int((batch["forget"]["labels"] != IGNORE).sum())
    params = [p for p in model.parameters() if p.requires_grad]
    flat = lambda loss: torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])  # noqa: E731
    ga = n_answer * flat(ALGORITHMS["ga"](model, batch))
    assert torch.allclose(flat(npo_loss(model, batch, reference, beta=1e-4)), ga, rtol=1e-3, atol=1e-7)
    # away from the limit the weight 2 sigmoid(beta r) differs from 1: the check can fail
    with torch.no_grad():
        from mrd_unlearning.unlearning import sequence_log_prob
        r = float(sequence_log_prob(model, batch["forget"]) - sequence_log_prob(reference, batch["forget"]))
    beta = 50.0  # two random models differ little in log pi: a large beta leaves the limit
    weight = 2 / (1 + np.exp(-beta * r))
    assert abs(weight - 1) > 0.2
    assert torch.allclose(flat(npo_loss(model, batch, reference, beta=beta)), weight * ga, rtol=1e-3, atol=1e-7)


def _unlearn(tokenizer, study_data, forget_encoded, model=None, **kw):
    model = tiny_model(tokenizer) if model is None else model
    retain = [encode_qa(tokenizer, r["question"], r["answer"], MAX_LENGTH) for r in study_data.retain[:8]]
    args = dict(algorithm="graddiff", sampler="mrd", drop=np.linspace(0.1, 1.0, len(forget_encoded)), steps=6,
                batch_size=2, lr=1e-2, optimizer="adamw", tau=1.0, seed=0, log_every=3,
                pad_id=tokenizer.pad_token_id, device="cpu")
    return unlearn(model, forget_encoded, retain, retain, **{**args, **kw})


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_algorithm_runs_deterministically_and_forgets(tokenizer, study_data, forget_encoded, trained,
                                                             algorithm):
    idk = [encode_qa(tokenizer, r["question"], a, MAX_LENGTH)
           for r, a in zip(study_data.forget, idk_answers(len(study_data.forget), seed=0))]
    kw = dict(algorithm=algorithm, forget_idk=idk, lr=3e-3)
    curve, costs = _unlearn(tokenizer, study_data, forget_encoded, model=copy.deepcopy(trained), **kw)
    again, _ = _unlearn(tokenizer, study_data, forget_encoded, model=copy.deepcopy(trained), **kw)
    assert curve.step.tolist() == [0, 3, 6] and curve.equals(again)
    assert curve.forget_loglik.iloc[-1] < curve.forget_loglik.iloc[0]
    assert costs["refreshes"] == 0 and costs["wall_s"] > 0


def test_idknll_needs_its_targets(tokenizer, study_data, forget_encoded):
    with pytest.raises(ValueError, match="don't know"):
        _unlearn(tokenizer, study_data, forget_encoded, algorithm="idknll")
    assert len(set(REFUSALS)) == len(REFUSALS) >= 20 and idk_answers(5, 1) == idk_answers(5, 1)


def test_refresh_recomputes_mrd_and_logs_its_cost(tokenizer, study_data, forget_encoded):
    estimator = Estimator(sigma=0.05, K=2)
    curve, costs = _unlearn(tokenizer, study_data, forget_encoded, sampler="mrd_refresh", refresh_every=2,
                            estimator=estimator)
    assert costs["refreshes"] == 2 and costs["refresh_s"] > 0  # at steps 2 and 4 of 6
    plain, _ = _unlearn(tokenizer, study_data, forget_encoded, sampler="mrd")
    assert not curve.equals(plain)
    with pytest.raises(ValueError, match="refresh_every"):
        _unlearn(tokenizer, study_data, forget_encoded, sampler="mrd_refresh")


def test_equal_forgetting_runs_past_the_budget_to_the_level_and_checkpoints_there(tokenizer, study_data,
                                                                                   forget_encoded):
    kw = dict(algorithm="ga", sampler="mrd")
    long, _ = _unlearn(tokenizer, study_data, forget_encoded, steps=12, **kw)
    at = dict(zip(long.step, long.forget_loglik))

    def run(level, **extra):
        calls = []
        curve, costs = _unlearn(tokenizer, study_data, forget_encoded, level=level, max_steps=12,
                                on_checkpoint=lambda name, step: calls.append((name, step)), **kw, **extra)
        return curve, costs, calls

    # reached after the budget (step 9 of a 6-step budget): the same trajectory, continued
    curve, costs, calls = run(at[9])
    assert calls == [("budget", 6), ("level", 9)] and costs["level_step"] == 9 and costs["steps_done"] == 9
    assert curve.step.tolist() == [0, 3, 6, 9] and np.allclose(curve.forget_loglik, long.forget_loglik[:4])
    # reached before the budget: evaluated there, and the run still takes its whole budget
    curve, costs, calls = run(at[3])
    assert calls == [("level", 3), ("budget", 6)] and curve.step.tolist() == [0, 3, 6]
    # never reached: evaluated at the cap, flagged
    curve, costs, calls = run(-1e9)
    assert calls == [("budget", 6), ("level", 12)] and not costs["level_reached"] and costs["steps_done"] == 12


def test_checking_the_level_every_step_evaluates_at_the_first_step_that_reaches_it(tokenizer, study_data,
                                                                                    forget_encoded):
    kw = dict(algorithm="ga", sampler="mrd", log_every=1)
    fine, _ = _unlearn(tokenizer, study_data, forget_encoded, steps=12, **kw)
    at = dict(zip(fine.step, fine.forget_loglik))
    first = next(s for s in fine.step if s > 6 and at[s] < at[s - 1])  # a step between curve points (log_every 3)
    calls = []
    curve, costs = _unlearn(tokenizer, study_data, forget_encoded, algorithm="ga", sampler="mrd", level=at[first],
                            max_steps=12, level_every=1, on_checkpoint=lambda name, step: calls.append((name, step)))
    reached = next(s for s in fine.step if at[s] <= at[first])  # the first step at or below the level
    assert costs["level_step"] == reached and ("level", reached) in calls
    assert reached in curve.step.tolist() and curve.set_index("step").forget_loglik[reached] == pytest.approx(at[first])
    assert set(curve.step) - {reached} <= {0, 3, 6, 9, 12}  # the other points stay on the log_every grid


def test_evaluating_at_a_checkpoint_does_not_change_the_run(tokenizer, study_data, forget_encoded):
    from mrd_unlearning.models import generate_answers

    questions = [r["question"] for r in study_data.forget_eval]
    model = tiny_model(tokenizer)

    def evaluate(name, step):  # what an evaluation does to the model: forward passes and greedy generation
        generate_answers(model, tokenizer, questions, max_new_tokens=4, batch_size=4, device="cpu")

    retain = [encode_qa(tokenizer, r["question"], r["answer"], MAX_LENGTH) for r in study_data.retain[:8]]
    args = dict(algorithm="npo", sampler="uniform", drop=None, steps=6, batch_size=2, lr=1e-2, optimizer="adamw",
                tau=1.0, seed=0, log_every=3, pad_id=tokenizer.pad_token_id, device="cpu", level=-1e9, max_steps=9)
    evaluated, _ = unlearn(model, forget_encoded, retain, retain, on_checkpoint=evaluate, **args)
    plain, _ = unlearn(tiny_model(tokenizer), forget_encoded, retain, retain, **args)
    pd.testing.assert_frame_equal(evaluated, plain)


def test_keep_models_writes_the_first_seeds_unlearned_checkpoint(tmp_path, data_dir, tokenizer):
    """unlearning.keep_models first_seed: seed<k>/model for the first seed only, a checkpoint that
    loads and gives the run's own forget likelihood after the budget."""
    import json

    from mrd_unlearning.io import write_json
    from mrd_unlearning.models import load_checkpoint, save_checkpoint
    from mrd_unlearning.mrd import score_loglik
    from mrd_unlearning.data.loader import load_study_data
    from mrd_unlearning.stages import _encode, unlearn_runs

    model_dir = tmp_path / "target"
    save_checkpoint(tiny_model(tokenizer), tokenizer, model_dir)
    data = load_study_data(data_dir)
    reference = tmp_path / "retain_samples.csv"
    pd.DataFrame({"split": "forget", "sample_id": range(len(data.forget)), "loglik": -9.0, "min_k": 0.0,
                  "truth_ratio": 0.5}).to_csv(reference, index=False)
    write_json(tmp_path / "retain.json", {"forget_loglik": -9.0})
    cfg = {"steps": 3, "epochs": None, "level_cap": 1.0, "batch_size": 2, "grad_accumulation": 1, "lr": 1e-2,
           "optimizer": "adamw", "log_every": 3, "keep_models": "first_seed"}
    out = tmp_path / "runs"
    unlearn_runs(str(model_dir), str(data_dir), str(tmp_path / "retain.json"), str(reference), str(out), replicate=0,
                 algorithm="ga", sampler="uniform", seeds=[4, 5], unlearning_cfg=cfg,
                 eval_cfg={"max_new_tokens": 2, "batch_size": 8, "max_wrong_answers": 1, "gradient_attack": False},
                 max_length=MAX_LENGTH, device="cpu", precision="fp32", threads=1)
    assert (out / "seed4" / "model" / "config.json").is_file() and not (out / "seed5" / "model").exists()
    model, tok = load_checkpoint(out / "seed4" / "model")
    run = json.loads((out / "seed4" / "run.json").read_text())
    kept = score_loglik(model, _encode(tok, data.forget_eval, MAX_LENGTH), 8, tok.pad_token_id, "cpu").mean()
    assert kept == pytest.approx(run["eval_budget"]["forget_loglik"], abs=1e-6)
