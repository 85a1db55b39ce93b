"""MRD unlearning: the Memory Removal Difficulty of each sample and MRD-weighted sampling
(arXiv:2504.06658), as a Snakemake study and as a library. `score_mrd` scores any forget set
on any causal LM (see its docstring); imported lazily, so that table-only jobs never load torch."""

import logging

__all__ = ["score_mrd"]

# transformers imports torchao (the quantization attack's library) with every model once it is
# installed; on a CPU torchao then warns that its CUDA kernels and triton are missing, and torch
# that torchao registers enums the old way. Neither concerns this package's use of it.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)


def __getattr__(name: str):
    if name == "score_mrd":
        from .mrd import score_mrd

        return score_mrd
    raise AttributeError(f"module 'mrd_unlearning' has no attribute {name!r}")
