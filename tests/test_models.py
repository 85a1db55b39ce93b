import torch

from mrd_unlearning.io import atomic_path
from mrd_unlearning.models import (IGNORE, answer_log_likelihood, collate, encode_qa, load_checkpoint, prompt_text,
                                   save_checkpoint, train_tokenizer)

from .conftest import MAX_LENGTH


def test_labels_cover_answer_and_eos_only(tokenizer):
    e = encode_qa(tokenizer, "Who?", "Nobody at all.", MAX_LENGTH)
    n_prompt = 1 + len(tokenizer.encode(prompt_text("Who?"), add_special_tokens=False))
    assert e.labels[:n_prompt] == [IGNORE] * n_prompt
    assert e.labels[n_prompt:] == e.input_ids[n_prompt:]
    assert e.labels[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(e.input_ids[n_prompt:-1]).strip() == "Nobody at all."


def test_answer_log_likelihood_matches_manual_computation(model, forget_encoded, tokenizer):
    batch = collate(forget_encoded[:3], tokenizer.pad_token_id)
    with torch.no_grad():
        got = answer_log_likelihood(model, batch)
        for i, e in enumerate(forget_encoded[:3]):
            ids = torch.tensor([e.input_ids])
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
            scored = [t for t in range(1, len(e.labels)) if e.labels[t] != IGNORE]
            manual = sum(logp[t - 1, e.labels[t]] for t in scored) / len(scored)
            assert abs(float(got[i]) - float(manual)) < 1e-6


def test_score_does_not_depend_on_batch_mates(model, forget_encoded, tokenizer):
    with torch.no_grad():
        together = answer_log_likelihood(model, collate(forget_encoded, tokenizer.pad_token_id))
        alone = torch.cat([answer_log_likelihood(model, collate([e], tokenizer.pad_token_id)) for e in forget_encoded])
    assert torch.allclose(together, alone, atol=1e-6, rtol=0)


def test_tokenizer_training_is_deterministic(study_data):
    texts = [r["answer"] for r in study_data.full]
    a, b = train_tokenizer(texts, 300), train_tokenizer(texts, 300)
    assert a.get_vocab() == b.get_vocab()
    assert a.encode(texts[0]) == b.encode(texts[0])


def test_checkpoint_round_trip(model, tokenizer, forget_encoded, tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "ckpt") as folder:
            save_checkpoint(model, tokenizer, folder)
            assert not (tmp_path / "ckpt").exists()  # nothing visible until complete
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "ckpt").iterdir()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}  # readable as any file here
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    batch = collate(forget_encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.equal(answer_log_likelihood(model, batch), answer_log_likelihood(loaded, batch))
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind
