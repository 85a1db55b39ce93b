"""The one training loop. Fine-tuning, unlearning and the ground-truth update counts differ only
in where batches come from, which loss is minimised, and when to stop."""
from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

from .models import answer_token_accuracy, batches, collate, nll_loss

LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; allowed: ['adamw', 'sgd']")


def train(model: torch.nn.Module, batch_at: Callable[[int], dict], loss_fn: LossFn,
          optimizer: torch.optim.Optimizer, max_steps: int, *,
          should_stop: Callable[[int], bool] | None = None, desc: str | None = None) -> tuple[int, bool]:
    """Run up to `max_steps` updates; `should_stop(step)` is asked before each update and once
    after the last. Returns (updates done, whether `should_stop` ended it)."""
    model.train()
    step = 0
    with tqdm(total=max_steps, desc=desc, disable=desc is None, leave=False, mininterval=2) as bar:
        while True:
            if should_stop is not None and should_stop(step):
                return step, True
            if step == max_steps:
                return step, False
            loss = loss_fn(model, batch_at(step))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.update()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")


@torch.no_grad()
def memorization_accuracy(model, encoded, batch_size: int, pad_id: int, device) -> float:
    hits = total = 0
    for batch in batches(encoded, batch_size, pad_id, device):
        h, t = answer_token_accuracy(model, batch)
        hits, total = hits + h, total + t
    return hits / total


def finetune(model, encoded, *, lr: float, weight_decay: float, batch_size: int, max_epochs: int,
             memorization_accuracy_target: float, seed: int, pad_id: int, device, desc: str) -> list[dict]:
    """Fine-tune until answer-token accuracy on the training data reaches the memorisation
    criterion (checked after every epoch), not far past it (STUDY 3.4). Returns the history."""
    steps_per_epoch = -(-len(encoded) // batch_size)
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    history: list[dict] = []
    optimizer = make_optimizer("adamw", model.parameters(), lr, weight_decay)

    def batch_at(step: int) -> dict:
        nonlocal order
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(encoded), generator=generator).tolist()
        pos = (step % steps_per_epoch) * batch_size
        return collate([encoded[i] for i in order[pos:pos + batch_size]], pad_id, device)

    def should_stop(step: int) -> bool:
        if step == 0 or step % steps_per_epoch:
            return False
        acc = memorization_accuracy(model, encoded, 64, pad_id, device)
        model.train()
        history.append({"epoch": step // steps_per_epoch, "step": step, "answer_token_accuracy": acc})
        return acc >= memorization_accuracy_target

    train(model, batch_at, nll_loss, optimizer, steps_per_epoch * max_epochs, should_stop=should_stop, desc=desc)
    model.eval()
    return history
