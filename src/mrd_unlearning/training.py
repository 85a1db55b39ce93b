"""The one training loop. Fine-tuning, unlearning and the ground-truth update counts differ only
in where batches come from, which loss is minimised, and when to stop."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed
from .models import batches, collate, nll_loss, token_log_probs
from .precision import Precision, autocast

LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; allowed: ['adamw', 'sgd']")


def train(model: torch.nn.Module, batch_at: Callable[[int], dict | list[dict]], loss_fn: LossFn,
          optimizer: torch.optim.Optimizer, max_steps: int, *,
          should_stop: Callable[[int], bool] | None = None, desc: str | None = None,
          accelerator=None, scheduler=None, precision: Precision | None = None) -> tuple[int, bool]:
    """Run up to `max_steps` updates; `should_stop(step)` is asked before each update and once
    after the last. Returns (updates done, whether `should_stop` ended it).

    `batch_at(step)` gives the step's batch, or a list of equal-sized micro-batches whose mean
    loss makes one update (gradient accumulation: the effective batch without its memory). With an
    `accelerate` Accelerator (data-parallel processes), gradients are averaged across processes.
    Losses are computed under the precision policy's autocast (float32 weights, bf16 compute)."""
    model.train()
    step = 0
    quiet = desc is None or (accelerator is not None and not accelerator.is_main_process)
    with tqdm(total=max_steps, desc=desc, disable=quiet, leave=False, mininterval=2) as bar:
        while True:
            if should_stop is not None and should_stop(step):
                return step, True
            if step == max_steps:
                return step, False
            batch = batch_at(step)
            micro = batch if isinstance(batch, list) else [batch]
            optimizer.zero_grad(set_to_none=True)
            for part in micro:
                with autocast(precision):
                    loss = loss_fn(model, part) / len(micro)
                accelerator.backward(loss) if accelerator is not None else loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            bar.update()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item() * len(micro):.4f}")


@torch.no_grad()
def answer_stats(model, encoded, batch_size: int, pad_id: int, device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: the mean answer log-likelihood, teacher-forced argmax hits and answer tokens."""
    loglik, hits, tokens = [], [], []
    for batch in batches(encoded, batch_size, pad_id, device):
        logp, mask, hit = token_log_probs(model, batch, with_hits=True)
        loglik.append((logp.sum(1) / mask.sum(1)).cpu().numpy())
        hits.append(hit.sum(1).cpu().numpy())
        tokens.append(mask.sum(1).cpu().numpy())
    return np.concatenate(loglik), np.concatenate(hits), np.concatenate(tokens)


def memorization_accuracy(model, encoded, batch_size: int, pad_id: int, device) -> float:
    """Answer-token accuracy over `encoded` (teacher-forced argmax)."""
    _, hits, tokens = answer_stats(model, encoded, batch_size, pad_id, device)
    return int(hits.sum()) / int(tokens.sum())


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor at each update: linear warm-up, then constant or a linear decay to
    0 at `total_steps` (TOFU's recipe, the Hugging Face Trainer's default)."""
    if schedule not in ("linear", "constant"):
        raise ValueError(f"unknown lr schedule {schedule!r}; allowed: ['linear', 'constant']")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def finetune(model, encoded, *, lr: float, weight_decay: float, batch_size: int, max_epochs: int,
             memorization_accuracy_target: float | None, seed: int, pad_id: int, device, desc: str,
             lr_schedule: str = "constant", warmup_epochs: float = 0.0, grad_accumulation: int = 1,
             eval_batch_size: int = 64, accelerator=None, strategy: str = "ddp",
             precision: Precision | None = None, track: list[int] | None = None) -> list[dict]:
    """Fine-tune until answer-token accuracy on the training data reaches the memorisation
    criterion (checked after every epoch), not far past it; with no criterion, for
    `max_epochs` (TOFU's recipe). The learning rate warms up over `warmup_epochs` and, with the
    linear schedule, decays to 0 at `max_epochs`: a settling model meets the criterion at a
    reproducible epoch, where a constant rate keeps it hovering just below. One update sees
    batch_size x grad_accumulation samples per process; with an `accelerate` Accelerator each of
    its processes takes every n-th of the update's samples (the same order everywhere; an epoch's
    order is padded by wrapping round, so every process has as many micro-batches), and n
    processes equal n-fold accumulation, whether the model is replicated (ddp) or sharded
    (fsdp). Returns the history; with `track` (positions in `encoded`), each epoch's entry also
    records, per tracked sample, its answer probability and whether every answer token was the
    argmax (`learned`): the learning events, from the pass the criterion needs anyway."""
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    per_update = batch_size * grad_accumulation * world
    steps_per_epoch = -(-len(encoded) // per_update)
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    history: list[dict] = []
    if accelerator is not None and strategy == "fsdp":
        distributed.shard(model).to(device)  # loaded on the CPU: only each process's shards reach its GPU
    optimizer = make_optimizer("adamw", [p for p in model.parameters() if p.requires_grad], lr, weight_decay)
    total = steps_per_epoch * max_epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(lr_schedule, round(warmup_epochs * steps_per_epoch), total))
    if accelerator is not None and strategy == "ddp":
        model, optimizer = accelerator.prepare(model, optimizer)

    def batch_at(step: int) -> list[dict]:
        nonlocal order
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(encoded), generator=generator).tolist()
            if world > 1:
                order = (order * -(-steps_per_epoch * per_update // len(order)))[:steps_per_epoch * per_update]
        pos = (step % steps_per_epoch) * per_update
        picks = order[pos:pos + per_update][rank::world]
        return [collate([encoded[i] for i in picks[m:m + batch_size]], pad_id, device)
                for m in range(0, len(picks), batch_size)]

    def should_stop(step: int) -> bool:
        if step == 0 or step % steps_per_epoch:
            return False
        # every process scores the whole set: as many forward passes (collectives under fsdp) each
        with autocast(precision):
            loglik, hits, tokens = answer_stats(model, encoded, eval_batch_size, pad_id, device)
        acc = int(hits.sum()) / int(tokens.sum())
        model.train()
        history.append({"epoch": step // steps_per_epoch, "step": step, "answer_token_accuracy": acc})
        if track is not None:
            history[-1]["tracked"] = {"probability": np.exp(loglik[track]).tolist(),
                                      "learned": (hits[track] == tokens[track]).tolist()}
        return memorization_accuracy_target is not None and acc >= memorization_accuracy_target

    train(model, batch_at, nll_loss, optimizer, total, should_stop=should_stop, desc=desc, accelerator=accelerator,
          scheduler=scheduler, precision=precision)
    model.eval()
    return history
