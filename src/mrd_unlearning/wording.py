"""Generated English: sentences the report, the plan and the results pages write about numbers.
Standard library only, so that the documentation's light environment can render with it."""
from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 replicate', '3 replicates': a number and its noun agree."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
