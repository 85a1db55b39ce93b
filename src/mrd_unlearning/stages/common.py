"""What every model stage shares: threads, seeds and deterministic kernels, a checkpoint loaded
with the precision policy, rows encoded for the model."""
from __future__ import annotations

import torch
import transformers

from ..models import encode_sample, load_checkpoint, resolve_device
from ..precision import resolve_precision


def setup(threads: int, seed: int = 0) -> None:
    """Threads as the rule declares them, seeds, deterministic kernels; no progress bars for
    loading or writing weights (training and scoring bars stay, in the job's log)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    transformers.utils.logging.disable_progress_bar()


def _load(model_dir: str, device: str, precision: str, frozen: bool = False):
    """A checkpoint on the configured device, with the precision policy's weights: those a job
    trains or perturbs (float32 master weights), or with `frozen` those it only evaluates."""
    dev = resolve_device(device)
    policy = resolve_precision(precision, dev)
    model, tokenizer = load_checkpoint(model_dir, dev, policy.frozen if frozen else policy.weights)
    return model, tokenizer, dev, policy


def _encode(tokenizer, rows, max_length):
    return [encode_sample(tokenizer, r, max_length) for r in rows]
