"""Models: the BPE tokenizer, the small Llama, QA encoding, and the float64 answer likelihood
that MRD, the ground truth and the metrics all share."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
IGNORE = -100


def prompt_text(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (every string encodable) trained on the study's own corpus."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS)


def build_model(tokenizer, *, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                max_length: int, seed: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_heads, intermediate_size=intermediate_size,
        max_position_embeddings=max_length, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key 'device' is 'cuda' but no CUDA device is available")
    return torch.device(name)


def save_checkpoint(model, tokenizer, folder: str | Path) -> None:
    """Model and tokenizer together, Hugging Face format. Callers write into an `atomic_path`
    folder, so that a checkpoint is complete, with its side files, or absent."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu"):
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model checkpoint at {path} (config.json missing)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
    model.eval()
    return model, tokenizer


@dataclass
class EncodedQA:
    input_ids: list[int]
    labels: list[int]  # IGNORE on the prompt: only answer tokens (and EOS) are scored and trained


def encode_qa(tokenizer, question: str, answer: str, max_length: int) -> EncodedQA:
    prompt = [tokenizer.bos_token_id] + tokenizer.encode(prompt_text(question), add_special_tokens=False)
    target = tokenizer.encode(" " + answer, add_special_tokens=False) + [tokenizer.eos_token_id]
    if len(prompt) + len(target) > max_length:
        raise ValueError(f"sample longer than model.max_length={max_length} tokens "
                         f"({len(prompt) + len(target)}): {question!r}")
    return EncodedQA(prompt + target, [IGNORE] * len(prompt) + target)


def collate(encoded: list[EncodedQA], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Right padding: positions of real tokens do not depend on batch-mates."""
    width = max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, e in enumerate(encoded):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def batches(encoded: list[EncodedQA], batch_size: int, pad_id: int, device) -> Iterator[dict[str, torch.Tensor]]:
    for start in range(0, len(encoded), batch_size):
        yield collate(encoded[start:start + batch_size], pad_id, device)


def token_log_probs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 log p(y_t | x, y_<t) at every scored position, and the mask of scored positions.

    Log-softmax runs in float64 on the scored positions only: in float32 the small likelihood
    changes MRD measures vanish for well-memorised samples (STUDY 3).
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE
    logp = torch.zeros(targets.shape, dtype=torch.float64, device=logits.device)
    picked = torch.log_softmax(logits[mask].double(), dim=-1)
    logp[mask] = picked.gather(-1, targets[mask][:, None])[:, 0]
    return logp, mask


def answer_log_likelihood(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """L(z) = mean log-likelihood of the answer tokens, per sample (float64)."""
    logp, mask = token_log_probs(model, batch)
    return logp.sum(1) / mask.sum(1)


def answer_nll(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: the summed NLL of the answer tokens and their number (float32, for training)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    mask = (targets != IGNORE).float()
    tok = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    return (tok * mask).sum(1), mask.sum(1)


def nll_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over samples of the per-sample mean answer NLL."""
    total, n = answer_nll(model, batch)
    return (total / n).mean()


@torch.no_grad()
def answer_token_accuracy(model, batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Teacher-forced argmax hits on answer tokens: (correct, total)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE
    return int((logits.argmax(-1) == targets)[mask].sum()), int(mask.sum())


@torch.no_grad()
def generate_answers(model, tokenizer, questions: list[str], *, max_new_tokens: int, batch_size: int,
                     device) -> list[str]:
    """Greedy answers, left-padded batches."""
    out: list[str] = []
    for start in range(0, len(questions), batch_size):
        prompts = [[tokenizer.bos_token_id] + tokenizer.encode(prompt_text(q), add_special_tokens=False)
                   for q in questions[start:start + batch_size]]
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        out += [s.strip() for s in tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)]
    return out
