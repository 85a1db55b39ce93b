"""Plain-text samples (MUSE's and WMDP's form) through the loader, the model's encoding, MRD,
gradient ascent and the evaluation; the library API `score_mrd`; OpenUnlearning's layout."""
import json

import numpy as np
import pytest
import torch

from mrd_unlearning.data.loader import load_study_data
from mrd_unlearning.evaluation import evaluate, openunlearning_eval
from mrd_unlearning.models import IGNORE, encode_sample, encode_text, token_log_probs, collate, verbatim_prompt
from mrd_unlearning.mrd import Estimator, PerturbationScorer, difficulty_drop, mrd_from_drop
from mrd_unlearning.stages import prepare_data
from mrd_unlearning.unlearning import unlearn

from .conftest import MAX_LENGTH, TINY_DATA, tiny_model

TEXT_DATA = {**TINY_DATA, "synthetic": {**TINY_DATA["synthetic"], "form": "text"}}


@pytest.fixture(scope="module")
def text_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("text") / "data"
    prepare_data(str(out), data_cfg=TEXT_DATA, seed=0)
    return load_study_data(out)


def test_text_rows_score_every_token_or_those_after_the_prefix(tokenizer):
    text = "Bala Kor was born in Threa."
    ids = tokenizer.encode(text, add_special_tokens=False)
    whole = encode_text(tokenizer, text, MAX_LENGTH)
    assert whole.input_ids == [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
    assert whole.labels == [IGNORE, *ids, tokenizer.eos_token_id]  # every token after BOS, and EOS
    after = encode_sample(tokenizer, {"text": text, "_prefix": 2}, MAX_LENGTH)
    assert after.input_ids == whole.input_ids and after.labels == [IGNORE] * 3 + ids[2:] + [tokenizer.eos_token_id]
    prompt, rest = verbatim_prompt(tokenizer, {"text": text, "_prefix": 0})
    assert prompt == [tokenizer.bos_token_id, *ids[:len(ids) // 2]]
    assert rest == tokenizer.decode(ids[len(ids) // 2:]).strip()
    with pytest.raises(ValueError, match="longer than model.max_length=4"):
        encode_text(tokenizer, text, 4)
    with pytest.raises(ValueError, match="not longer than data.text_prefix_tokens"):
        encode_sample(tokenizer, {"text": text, "_prefix": 50}, MAX_LENGTH)


def test_the_likelihood_of_a_text_row_is_its_mean_token_log_probability(tokenizer, text_data):
    model = tiny_model(tokenizer)
    e = encode_sample(tokenizer, text_data.forget[0], MAX_LENGTH)
    with torch.no_grad():
        logp, mask = token_log_probs(model, collate([e], tokenizer.pad_token_id))
        manual = torch.log_softmax(model(input_ids=torch.tensor([e.input_ids])).logits[0].double(), -1)
    expected = np.mean([float(manual[t - 1, e.input_ids[t]]) for t in range(1, len(e.input_ids))])
    assert int(mask.sum()) == len(e.input_ids) - 1
    assert float(logp.sum() / mask.sum()) == pytest.approx(expected, abs=1e-9)


def test_mrd_and_gradient_ascent_on_text_rows(tokenizer, text_data):
    from mrd_unlearning import score_mrd

    model = tiny_model(tokenizer)
    encoded = [encode_sample(tokenizer, r, MAX_LENGTH) for r in text_data.forget]
    scores, info = score_mrd(model, tokenizer, text_data.forget, K=4, sigma=0.05, seed=3, progress=False)
    # the same numbers as the estimator's own machinery
    result = PerturbationScorer(model, encoded, batch_size=16, pad_id=tokenizer.pad_token_id, device="cpu",
                                progress=False).estimate(Estimator(K=4, sigma=0.05), seed=3)
    drop = difficulty_drop(result, "signed", "none")
    np.testing.assert_array_equal(scores["drop"], drop)
    np.testing.assert_array_equal(scores["mrd"], mrd_from_drop(drop, 1e-8))
    assert list(scores.sample_id) == list(range(len(text_data.forget)))
    assert scores.weight_uniform.sum() == pytest.approx(1) and scores.weight_mrd.sum() == pytest.approx(1)
    assert info["sigma"] == 0.05 and info["K"] == 4 and 0 <= info["positive_share"] <= 1
    retain = [encode_sample(tokenizer, r, MAX_LENGTH) for r in text_data.retain_eval]
    curve, _ = unlearn(model, encoded, retain, retain, algorithm="ga", sampler="mrd", drop=drop, steps=6,
                       batch_size=2, lr=1e-2, optimizer="adamw", tau=1.0, seed=0, log_every=3,
                       pad_id=tokenizer.pad_token_id, device="cpu")
    assert curve.forget_loglik.iloc[-1] < curve.forget_loglik.iloc[0] - 0.1


def test_a_bad_setting_of_score_mrd_names_the_key(tokenizer, text_data):
    from mrd_unlearning import score_mrd
    from mrd_unlearning.config import ConfigError

    with pytest.raises(ConfigError, match="config key 'mrd.statistic'.*allowed values"):
        score_mrd(tiny_model(tokenizer), tokenizer, text_data.forget, statistic="median")


def test_text_evaluation_leaves_the_qa_only_metrics_out(tokenizer, text_data):
    model = tiny_model(tokenizer)
    summary, samples = evaluate(model, tokenizer, text_data, max_length=MAX_LENGTH, max_new_tokens=4, batch_size=4,
                                device="cpu", gradient_attack=False)
    assert summary["data_kind"] == "text" and summary["model_utility_parts"] == 2
    assert not {"forget_quality", "forget_truth_ratio", "retain_truth_ratio"} & set(summary)
    assert "truth_ratio" not in samples
    forget = samples[samples.split == "forget"]
    assert len(forget) == len(text_data.forget) and forget.rouge_l.between(0, 1).all()
    assert summary["forget_prob"] == pytest.approx(float(np.exp(forget.loglik).mean()))
    assert 0 <= summary["mia_loss"] <= 1 and 0 <= summary["mia_zlib"] <= 1


def test_openunlearning_layout(tokenizer, study_data):
    """metric -> {agg_value, value_by_index: {"0": {...}, ...}}, OpenUnlearning's TOFU_EVAL.json."""
    model = tiny_model(tokenizer)
    summary, samples = evaluate(model, tokenizer, study_data, max_length=MAX_LENGTH, max_new_tokens=4, batch_size=4,
                                device="cpu", gradient_attack=False)
    reference = samples.copy()
    summary, samples = evaluate(model, tokenizer, study_data, max_length=MAX_LENGTH, max_new_tokens=4, batch_size=4,
                                device="cpu", gradient_attack=False, reference=reference)
    out = json.loads(json.dumps(openunlearning_eval(summary, samples)))  # plain JSON: no NaN
    n = len(study_data.forget)
    for name in ("forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_truth_ratio", "retain_Q_A_Prob", "retain_Q_A_ROUGE",
                 "retain_Truth_Ratio"):
        assert set(out[name]) == {"agg_value", "value_by_index"}
    assert list(out["forget_Q_A_Prob"]["value_by_index"]) == [str(i) for i in range(n)]
    probs = [v["prob"] for v in out["forget_Q_A_Prob"]["value_by_index"].values()]
    assert np.mean(probs) == pytest.approx(out["forget_Q_A_Prob"]["agg_value"])
    assert out["forget_Q_A_ROUGE"]["value_by_index"]["0"].keys() == {"rougeL_recall", "generation"}
    assert set(out["forget_truth_ratio"]["value_by_index"]["0"]) == {"score"}
    for name in ("forget_quality", "model_utility", "privleak", "mia_min_k", "mia_loss", "mia_zlib",
                 "mia_min_k_plus_plus"):
        assert set(out[name]) == {"agg_value"}
    assert out["forget_quality"]["agg_value"] == pytest.approx(1.0)  # the same model as its reference
    assert out["model_utility"]["agg_value"] == pytest.approx(summary["model_utility"])
    assert "ra_Q_A_Prob_normalised" not in out  # no utility splits in this data


def test_the_readmes_trainer_example_samples_by_the_mrd_weights(tokenizer, study_data, tmp_path):
    """The README's snippet, run as written: a Trainer whose sampler draws the forget set with
    frequencies matching `weight_mrd` (chi-square goodness of fit)."""
    import re

    from scipy.stats import chisquare
    from transformers import TrainingArguments

    from .conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- mrd-trainer-example[^>]*-->\n```python\n(.*?)```", readme, re.S).group(1)
    namespace = {"model": tiny_model(tokenizer), "tokenizer": tokenizer, "forget_rows": study_data.forget}
    exec(code, namespace)  # noqa: S102
    scores = namespace["scores"]
    trainer = namespace["MRDWeightedTrainer"](
        model=namespace["model"], train_dataset=list(range(len(scores))),
        args=TrainingArguments(output_dir=str(tmp_path), seed=0, use_cpu=True, report_to=[]))
    sampler = trainer._get_train_sampler()
    draws = [i for _ in range(4000) for i in sampler]  # enough to tell these weights from uniform
    counts = np.bincount(draws, minlength=len(scores))
    assert chisquare(counts, scores.weight_mrd.to_numpy() * len(draws)).pvalue > 1e-3
    assert chisquare(counts).pvalue < 1e-6 and namespace["info"]["K"] == 32


def test_generation_length_auto_covers_the_longest_reference_of_every_split(tokenizer, study_data, text_data):
    from mrd_unlearning.models import answer_ids

    model = tiny_model(tokenizer)
    summary, samples = evaluate(model, tokenizer, study_data, max_length=MAX_LENGTH, max_new_tokens="auto",
                                batch_size=4, device="cpu", gradient_attack=False)
    rows = study_data.forget_eval + study_data.retain_eval + [r for part in study_data.utility.values() for r in part]
    longest = max(len(answer_ids(tokenizer, r["answer"])) for r in rows)
    assert summary["max_new_tokens"] == longest  # one limit: the longest reference of every evaluated split
    shortest_split = min(max(len(answer_ids(tokenizer, r["answer"])) for r in part)
                         for part in (study_data.forget_eval, study_data.retain_eval))
    assert longest > shortest_split  # (so the test tells one limit from each split's own)
    generations = samples.dropna(subset=["generation"])
    assert all(len(tokenizer.encode(g, add_special_tokens=False)) <= longest for g in generations.generation)
    summary, _ = evaluate(model, tokenizer, text_data, max_length=MAX_LENGTH, max_new_tokens="auto", batch_size=4,
                          device="cpu", gradient_attack=False)
    rests = [verbatim_prompt(tokenizer, r)[1] for r in text_data.forget_eval + text_data.retain_eval]
    assert summary["max_new_tokens"] == max(len(tokenizer.encode(t, add_special_tokens=False)) + 1 for t in rests)
