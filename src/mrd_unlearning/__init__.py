"""MRD unlearning: the Memory Removal Difficulty of each sample and MRD-weighted sampling
(arXiv:2504.06658), as a Snakemake study and as a library. `score_mrd` scores any forget set
on any causal LM (see its docstring); imported lazily, so that table-only jobs never load torch."""

__all__ = ["score_mrd"]


def __getattr__(name: str):
    if name == "score_mrd":
        from .mrd import score_mrd

        return score_mrd
    raise AttributeError(f"module 'mrd_unlearning' has no attribute {name!r}")
