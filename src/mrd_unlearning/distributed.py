"""Training across processes (finetune.processes > 1, one per GPU), on existing engines:
`accelerate` launches the processes and sets up the process group (NCCL on GPUs, gloo on CPUs);
finetune.strategy picks how the model is spread over them.

- ddp: every process holds the whole model, gradients are averaged (torch DDP, via accelerate);
- fsdp: weights, gradients and AdamW state are sharded across the processes (torch FSDP2,
  `fully_shard` per decoder layer and at the root), so a model whose training state does not fit
  one GPU trains on several. It runs on CPUs too (gloo), which is how the tests check it.

Either way n processes x batch b equal one process with n-fold gradient accumulation."""
from __future__ import annotations

import torch

STRATEGIES = ("ddp", "fsdp")


def launch(fn, args: tuple, processes: int) -> None:
    from accelerate import notebook_launcher

    notebook_launcher(fn, args=args, num_processes=processes)


def make_accelerator(device: str):
    from accelerate import Accelerator

    return Accelerator(cpu=device == "cpu")


def decoder_layers(model) -> list[torch.nn.Module]:
    """The repeated blocks FSDP shards one by one (a Hugging Face decoder's `layers`)."""
    found = [m for name, m in model.named_modules() if name.endswith(".layers") and isinstance(m, torch.nn.ModuleList)]
    if not found:
        raise ValueError(f"finetune.strategy 'fsdp': no decoder layers found in {type(model).__name__}")
    return list(found[0])


def shard(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP2 in place: each decoder layer is one unit (all-gathered for its forward and backward,
    resharded after), the rest (embeddings, norm, head) the root unit. Build the optimizer after."""
    from torch.distributed.fsdp import fully_shard

    for layer in decoder_layers(model):
        fully_shard(layer)
    fully_shard(model)
    return model


def full_state_dict(model: torch.nn.Module, strategy: str) -> dict[str, torch.Tensor] | None:
    """The whole model's weights on the CPU (a collective under fsdp: every process calls it)."""
    if strategy != "fsdp":
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
