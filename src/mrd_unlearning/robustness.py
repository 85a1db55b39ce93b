"""Attacks on forgetting: does an unlearned model's forgetting hold when someone fine-tunes it a
little on related data (relearning), or loads its weights at lower precision (quantization)? Both
act on the model in memory, so the process that unlearned it can attack it without writing a
checkpoint; each forget sample is then measured again by the evaluation's own code."""
from __future__ import annotations

import contextlib
import copy
import re

import numpy as np
import pandas as pd
import torch

from . import evaluation
from .models import EncodedQA, collate, encode_sample, nll_loss, without_lora
from .precision import Precision
from .training import make_optimizer, train

QUANTIZATION_BITS = (8, 4)
GROUP_SIZES = (32, 64, 128)  # int4 groups: 64 is bitsandbytes' block, the size Zhang et al. quantized with


def relearning_folds(groups, *, seed: int, n_folds: int = 2, across_groups: bool = False
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(relearned, scored) sample positions per fold. `groups` holds one label per sample (data
    without groups: the same label for all). Within groups (default), each group's samples (an
    author's questions) are shuffled with `seed` and dealt into `n_folds` parts; fold k scores
    part k after relearning every other part. So the attacker relearns facts *related* to the ones
    scored (the same authors), never the scored ones themselves. `across_groups`: whole groups
    are dealt into the folds instead, so a scored sample's own group is never relearned (what
    comes back then owes nothing to the same author's other answers). Every sample is scored
    exactly once."""
    if n_folds < 2:
        raise ValueError(f"robustness.relearning.folds must be at least 2, got {n_folds}")
    labels = np.asarray(groups)
    rng = np.random.default_rng(seed)
    part = np.empty(len(labels), dtype=int)
    names = list(dict.fromkeys(labels.tolist()))
    if across_groups:
        if len(names) < n_folds:
            raise ValueError(f"folds across groups need at least {n_folds} groups, got {len(names)}")
        for k, g in enumerate(rng.permutation(len(names))):
            part[labels == names[g]] = k % n_folds
    else:
        for g in names:
            members = rng.permutation(np.flatnonzero(labels == g))
            part[members] = (np.arange(len(members)) + rng.integers(n_folds)) % n_folds  # the group's first part: random
    positions = np.arange(len(labels))
    return [(positions[part != k], positions[part == k]) for k in range(n_folds)]


_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset("a an and are as at be by for from has have he her his in is it its of on or she that the "
                      "their they this to was were with who whom which what".split())


def content_words(text: str) -> set[str]:
    """The lower-cased words of a text that carry content (not the commonest function words)."""
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


def content_overlap(rows: list[dict], folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per sample, the share of its answer's (a text row's) content words that occur in the answers
    of the samples relearned in the fold that scores it: where it is high, relearning may simply
    teach the scored answer again rather than uncover what unlearning left."""
    texts = [r["answer"] if "question" in r else r["text"] for r in rows]
    share = np.full(len(rows), np.nan)
    for relearned, scored in folds:
        taught = set().union(*(content_words(texts[i]) for i in relearned)) if len(relearned) else set()
        for i in scored:
            words = content_words(texts[i])
            share[i] = len(words & taught) / len(words) if words else 0.0
    return share


def relearn(model, encoded: list[EncodedQA], *, steps: int, lr: float, batch_size: int, optimizer: str, seed: int,
            pad_id: int, device, precision: Precision | None = None, at_step=None) -> None:
    """`steps` updates of the answers' NLL on `encoded` (the one training loop), batches drawn in
    a seeded order that cycles through the relearning set; `at_step(step)`, where given, is called
    before each update and after the last (the model in eval mode during the call, so it can
    measure). The model is left in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    size = min(batch_size, len(encoded))
    order: list[int] = []

    def batch_at(step: int) -> dict:
        nonlocal order
        if len(order) < size:
            order += torch.randperm(len(encoded), generator=generator).tolist()
        picks, order = order[:size], order[size:]
        return collate([encoded[i] for i in picks], pad_id, device)

    def visit(step: int) -> bool:
        if at_step is not None:
            model.eval()
            at_step(step)
            model.train()
        return False

    trainable = [p for p in model.parameters() if p.requires_grad]
    train(model, batch_at, nll_loss, make_optimizer(optimizer, trainable, lr), steps, precision=precision,
          should_stop=visit)
    model.zero_grad(set_to_none=True)
    model.eval()


def quantized(model, bits: int, *, group_size: int = 32):
    """A copy of `model` with its linear layers' weights quantized by torchao (weight-only; the
    activations stay in the model's dtype): int8 per output channel, or int4 in symmetric groups
    of `group_size` input weights (32, 64 or 128; 64 is bitsandbytes' 4-bit block). LoRA adapters
    are merged into the copy first: a user quantizes the model as it would be served. The output
    head is kept, as quantized LLMs are usually served."""
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    if bits == 8:
        config = Int8WeightOnlyConfig()
    elif bits == 4:
        if group_size not in GROUP_SIZES:
            raise ValueError(f"robustness.quantization.group_size takes {list(GROUP_SIZES)}, got {group_size}")
        config = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))
    else:
        raise ValueError(f"robustness.quantization.bits takes {list(QUANTIZATION_BITS)}, got {bits}")
    out = without_lora(copy.deepcopy(model)).eval()
    head = out.get_output_embeddings()
    def quantizable(module, fqn) -> bool:  # int4: layers whose inputs split into whole groups (tiny models' may not)
        return isinstance(module, torch.nn.Linear) and module is not head and \
            (bits == 8 or module.in_features % group_size == 0)

    quantize_(out, config, filter_fn=quantizable)
    return out


def measure(model, tokenizer, rows: list[dict], *, max_length: int, max_new_tokens: int, batch_size: int, device,
            max_wrong_answers: int | None = None, full: bool = True) -> pd.DataFrame:
    """The evaluation's own per-sample measures of `rows` (forget samples): likelihood, ROUGE-L of
    the greedy generation and, for QA rows, the truth ratio; no membership scores. `full` False:
    the likelihood alone (one forward pass; the others, a generation and a pass per wrong answer,
    cost about ten times more), the rest NaN."""
    if not full:
        scored = evaluation._score(model, tokenizer, rows, max_length=max_length, batch_size=batch_size,
                                   device=device)
        return pd.DataFrame({"sample_id": np.arange(len(rows)), "loglik": scored["loglik"]})
    frame = evaluation._split_frame(model, tokenizer, rows, "attacked", max_new_tokens=max_new_tokens,
                                    max_wrong=max_wrong_answers, max_length=max_length, batch_size=batch_size,
                                    device=device)
    return frame.drop(columns=["split"])


def relearning_attack(model, tokenizer, rows: list[dict], groups, *, steps, lr: float, batch_size: int,
                      optimizer: str, folds: int, seed: int, device, max_length: int, max_new_tokens: int,
                      max_wrong_answers: int | None = None, precision: Precision | None = None,
                      across_groups: bool = False, measure_batch_size: int | None = None) -> pd.DataFrame:
    """Every fold from the same starting weights (the model as given, restored after each fold):
    relearn one part of the samples (`relearning_folds`), measure the others after each budget in
    `steps` (one number or several: one relearning run per fold, measured along the way). Returns
    the measures of every sample (sample_id = its position in `rows`) at every budget (`steps`),
    each from the one fold that scored it, with `overlap`: the share of its answer's content
    words that the fold relearned. Every measure after the longest budget; the likelihood alone
    after the shorter ones (`measure`'s `full`), batches of `measure_batch_size` (default
    `batch_size`)."""
    budgets = sorted({int(s) for s in np.atleast_1d(steps)})
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    encoded = [encode_sample(tokenizer, r, max_length) for r in rows]
    plan = relearning_folds(groups, seed=seed, n_folds=folds, across_groups=across_groups)
    overlap = content_overlap(rows, plan)
    frames = []
    for k, (relearned, scored) in enumerate(plan):
        if len(scored) == 0:
            continue
        scored_rows = [rows[i] for i in scored]

        def measure_at(step: int) -> None:
            if step in budgets:
                part = measure(model, tokenizer, scored_rows, max_length=max_length, max_new_tokens=max_new_tokens,
                               batch_size=measure_batch_size or batch_size, device=device,
                               max_wrong_answers=max_wrong_answers, full=step == budgets[-1])
                frames.append(part.assign(sample_id=scored, fold=k, steps=step, overlap=overlap[scored]))

        if len(relearned):
            relearn(model, [encoded[i] for i in relearned], steps=budgets[-1], lr=lr, batch_size=batch_size,
                    optimizer=optimizer, seed=seed + k, pad_id=tokenizer.pad_token_id, device=device,
                    precision=precision, at_step=measure_at)
        else:  # nothing to relearn: every budget leaves the model as given
            for step in budgets:
                measure_at(step)
        model.load_state_dict(start)
    return pd.concat(frames, ignore_index=True).sort_values(["steps", "sample_id"], ignore_index=True)


def quantization_attack(model, tokenizer, rows: list[dict], bits: int, *, group_size: int, full: bool = True,
                        **measure_kw) -> pd.DataFrame:
    """The measures of every sample on the model quantized to `bits` (`full` False: the likelihood
    alone; a generation with low-bit kernels on a CPU costs most of an attack)."""
    return measure(quantized(model, bits, group_size=group_size), tokenizer, rows, full=full, **measure_kw)


def attack(model, tokenizer, rows: list[dict], groups, *, relearning: dict, quantization: dict, seed: int, device,
           max_length: int, max_new_tokens: int, max_wrong_answers: int | None = None,
           precision: Precision | None = None, measure_batch_size: int | None = None) -> pd.DataFrame:
    """Every attack on `model` as unlearning left it, in one long frame (attack, sample_id, the
    measures): `relearn@<steps>` for each of `relearning`'s steps (with its lr, batch_size,
    optimizer, folds and across_groups), then `int<bits>` for each of `quantization`'s bits
    (groups of its group_size). The model's weights are as given afterwards. Measured in batches
    of `measure_batch_size` (default: the relearning's)."""
    measure_batch_size = measure_batch_size or relearning["batch_size"]
    measure_kw = dict(max_length=max_length, max_new_tokens=max_new_tokens, device=device,
                      max_wrong_answers=max_wrong_answers)
    frames = []
    if relearning.get("steps"):
        relearned = relearning_attack(model, tokenizer, rows, groups, steps=relearning["steps"], lr=relearning["lr"],
                                      optimizer=relearning["optimizer"], folds=relearning["folds"], seed=seed,
                                      precision=precision, across_groups=relearning.get("across_groups", False),
                                      batch_size=relearning["batch_size"], measure_batch_size=measure_batch_size,
                                      **measure_kw)
        frames.append(relearned.assign(attack=[f"relearn@{s}" for s in relearned.steps]).drop(columns=["fold", "steps"]))
    for bits in quantization.get("bits", []):
        part = quantization_attack(model, tokenizer, rows, bits, group_size=quantization["group_size"],
                                   full=quantization.get("measures", "all") == "all", batch_size=measure_batch_size,
                                   **measure_kw)
        frames.append(part.assign(attack=f"int{bits}"))
    out = pd.concat(frames, ignore_index=True)
    return out[["attack", *[c for c in out.columns if c != "attack"]]]


def attack_study(model, tokenizer, data, robustness_cfg: dict, eval_cfg: dict, *, lr: float, device, max_length: int,
                 precision: Precision | None = None, attacks: tuple[str, ...] = ("relearning", "quantization")
                 ) -> pd.DataFrame:
    """The configured attacks (`robustness` of the config; those named in `attacks`) on a study's
    forget set, measured as the evaluation measures it (its generation limit, its wrong answers).
    The relearning lr is `robustness.relearning.lr`, else `lr` (the unlearning's)."""
    from .data.loader import forget_groups

    rows = data.forget_eval
    limit = eval_cfg["max_new_tokens"]
    if limit == "auto":
        limit = evaluation.generation_limit(tokenizer, [data.forget_eval, data.retain_eval, *data.utility.values()])
    relearning = dict(robustness_cfg["relearning"])
    relearning["lr"] = relearning.get("lr") or lr
    if "relearning" not in attacks:
        relearning["steps"] = []
    quantization = robustness_cfg["quantization"] if "quantization" in attacks else {"bits": []}
    context = precision.autocast() if precision is not None else contextlib.nullcontext()
    with context:
        return attack(model, tokenizer, rows, forget_groups(data), relearning=relearning, quantization=quantization,
                      seed=robustness_cfg["seed"], device=device, max_length=max_length, max_new_tokens=int(limit),
                      max_wrong_answers=eval_cfg["max_wrong_answers"], precision=precision,
                      measure_batch_size=eval_cfg["batch_size"])
