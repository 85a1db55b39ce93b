"""lm-evaluation-harness on the study's in-memory model: a made-up 4-choice task in WMDP's format,
scored by the harness, against the argmax log-likelihood computed by hand."""
from __future__ import annotations

import json

import numpy as np
import torch

from mrd_unlearning.harness import CHOICE_LETTERS, description, harness_accuracy, multiple_choice_task, task_group

from .conftest import tiny_model

QUESTIONS = [("Which value does attribute {i} take?", [f"value {i}", f"value {i + 1}", f"value {i + 2}",
                                                       f"value {i + 3}"], i % 4) for i in range(8)]


def _hand_loglik(model, tokenizer, context: str, continuation: str) -> float:
    """The harness's reading of a choice: the continuation's tokens are those the whole string adds
    to the context's (no special tokens), scored given everything before them."""
    context_ids = tokenizer(context, add_special_tokens=False).input_ids
    whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
    with torch.no_grad():
        logp = model(torch.tensor([whole])).logits[0].log_softmax(-1)
    return float(sum(logp[t - 1, whole[t]] for t in range(len(context_ids), len(whole))))


def test_the_harness_scores_a_made_up_wmdp_task_as_the_argmax_of_the_choices_log_likelihood(tokenizer, tmp_path):
    rows = [{"question": q.format(i=i), "choices": choices, "answer": answer}
            for i, (q, choices, answer) in enumerate(QUESTIONS)]
    data = tmp_path / "toy_wmdp.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    multiple_choice_task("toy_wmdp", data, tmp_path / "tasks")
    model = tiny_model(tokenizer, seed=3).train()
    accuracy, items = harness_accuracy(model, tokenizer, ["toy_wmdp"], include_path=tmp_path / "tasks", batch_size=4)

    hand = []
    for r in rows:
        context = (f"{r['question'].strip()}\n" + "".join(f"{letter}. {choice}\n" for letter, choice
                                                          in zip(CHOICE_LETTERS, r["choices"])) + "Answer:")
        hand.append([_hand_loglik(model, tokenizer, context, f" {letter}") for letter in CHOICE_LETTERS])
    hand = np.array(hand)
    items = items.sort_values("doc_id")
    assert len(items) == len(rows) and items.target.tolist() == [r["answer"] for r in rows]
    assert np.allclose(np.stack(items.choice_loglik.to_numpy()), hand, atol=1e-4)
    assert items.chosen.tolist() == hand.argmax(axis=1).tolist()
    assert accuracy["toy_wmdp"]["acc"] == np.mean(hand.argmax(axis=1) == [r["answer"] for r in rows])
    assert items.acc.mean() == accuracy["toy_wmdp"]["acc"]
    assert model.training  # scored in eval mode, handed back as it came


def test_a_group_of_wmdp_subsets_with_their_description_lines(tokenizer, tmp_path):
    """Two made-up subsets, each with WMDP's line naming its subject before every question, run as
    a group (as the harness's `wmdp` group runs wmdp_bio and wmdp_chem): every item is scored
    after that line, rows come per subset, and the group's accuracy is the mean over all items."""
    short = [("Q{i}?", [f"v{i}", f"v{i + 1}", f"v{i + 2}", f"v{i + 3}"], i % 4) for i in range(8)]  # fits 96 tokens
    subsets = {"toy_bio": ("biology", short[:5]), "toy_chem": ("chemistry", short[3:])}
    for name, (subject, questions) in subsets.items():
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps({"question": q.format(i=i), "choices": c, "answer": a}) + "\n"
                                for i, (q, c, a) in enumerate(questions)))
        multiple_choice_task(name, data, tmp_path / "tasks", subject=subject)
    task_group("toy_wmdp", list(subsets), tmp_path / "tasks")
    model = tiny_model(tokenizer, seed=5)
    scores, items = harness_accuracy(model, tokenizer, ["toy_wmdp"], include_path=tmp_path / "tasks", batch_size=4)
    assert sorted(items.task.unique()) == sorted(subsets) and len(items) == 5 + 5
    for name, (subject, questions) in subsets.items():
        part = items[items.task == name].sort_values("doc_id")
        for (i, (q, choices, answer)), logliks in zip(enumerate(questions), part.choice_loglik):
            context = (description(subject) + f"{q.format(i=i).strip()}\n"
                       + "".join(f"{letter}. {c}\n" for letter, c in zip(CHOICE_LETTERS, choices)) + "Answer:")
            hand = [_hand_loglik(model, tokenizer, context, f" {letter}") for letter in CHOICE_LETTERS]
            assert np.allclose(logliks, hand, atol=1e-4)
    assert scores["toy_wmdp"]["acc"] == np.mean(items.acc)  # weighted by size: the mean over all 10 items
