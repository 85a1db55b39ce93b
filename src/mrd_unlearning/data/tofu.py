"""TOFU (Maini et al. 2024) as a data source: read where it is (a local folder), or fetched once
from the hub through `datasets` when online. Either way the study reads it through the one
TOFU-format loader (`loader.read_split`)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

FORGET_SPLITS = ("forget01", "forget05", "forget10")
AUTHOR_QA = 20  # TOFU: 200 authors x 20 QA pairs, grouped by author in every split


def split_names(forget_split: str) -> dict[str, str]:
    """File stems of one study's splits: forgetNN with retain(100-NN), holdoutNN and the
    perturbed evaluation files; real_authors and world_facts give the 9-part model utility."""
    if forget_split not in FORGET_SPLITS:
        raise ValueError(f"unknown TOFU forget split {forget_split!r}; allowed: {list(FORGET_SPLITS)}")
    nn = forget_split[len("forget"):]
    return {
        "full": "full",
        "forget": forget_split,
        "retain": f"retain{100 - int(nn):02d}",
        "holdout": f"holdout{nn}",
        "forget_eval": f"{forget_split}_perturbed",
        "retain_eval": "retain_perturbed",
        "real_authors": "real_authors_perturbed",
        "world_facts": "world_facts_perturbed",
    }


def n_authors(forget_split: str) -> int:
    """forgetNN holds NN% of TOFU's 200 authors."""
    split_names(forget_split)
    return 2 * int(forget_split[len("forget"):])


def questions_per_author(forget_split: str, k: int, seed: int) -> list[int]:
    """Row positions of k questions drawn from each author of the forget split (a seeded choice,
    so every replicate and every rerun forgets the same questions): many authors at the cost of
    few questions, so that intervals can speak about authors."""
    if not 1 <= k <= AUTHOR_QA:
        raise ValueError(f"config key 'data.tofu.per_author': {k}; allowed: 1 to {AUTHOR_QA} questions per author")
    rng = np.random.default_rng(seed)
    return [int(a * AUTHOR_QA + q) for a in range(n_authors(forget_split))
            for q in np.sort(rng.choice(AUTHOR_QA, size=k, replace=False))]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_from_hub(hub_id: str, stems: list[str], out_dir: Path) -> None:
    """Download the named splits (hub configs of the same names) as TOFU-format JSON Lines."""
    from datasets import load_dataset  # only when online: the local route never imports it

    from .loader import DataError  # here: the planner imports this module, and the loader brings pandas

    for stem in stems:
        try:
            rows = load_dataset(hub_id, stem, split="train")
        except Exception as err:  # offline, a proxy, a renamed config: the datasets library's many errors
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise DataError(f"config key 'data.tofu.path' is null, so TOFU's {stem} is fetched from the hub "
                            f"({hub_id}), which failed: {first}. With a local copy of TOFU, set data.tofu.path to "
                            f"its folder (config/local_tofu.yaml does: make reproduce CONFIG=\"<config> "
                            f"config/local_tofu.yaml\")") from None
        rows.to_json(out_dir / f"{stem}.json", lines=True, force_ascii=False)
