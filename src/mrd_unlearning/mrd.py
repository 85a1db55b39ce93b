"""Memory Removal Difficulty: how much a sample's answer likelihood drops when the
weights are perturbed at random. One perturbation per k is applied in place to all trainable
parameters and every sample is scored under it, so the cost is about K + 1 forward passes over
the set; the weights are restored bit-exactly from one saved copy.

Every reading of MRD the study reports is an `Estimator`. Variants that share a
perturbation scale and seed share the drops: `PerturbationScorer` computes each (sigma_mode,
sigma, seed) once, and a smaller K is the first K perturbations of a larger one."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from .models import answer_log_likelihood, batches, token_log_probs

THIRDPARTY_SIGMA, THIRDPARTY_K = 1e-5, 8
STATISTICS = ("signed", "abs")
NORMALIZATIONS = ("none", "relative")
SIGMA_MODES = ("absolute", "relative")


@dataclass(frozen=True)
class Estimator:
    """One reading of MRD: the perturbation scale (a number or 'auto'), how the K drops are
    summarised, and whether D is divided by |L(z)|."""
    statistic: str = "signed"
    normalize: str = "none"
    sigma_mode: str = "absolute"
    sigma: float | str = "auto"
    K: int = 32

    @classmethod
    def from_config(cls, cfg: dict) -> "Estimator":
        return cls(**{k: cfg[k] for k in ("statistic", "normalize", "sigma_mode", "sigma", "K") if k in cfg})

    def with_overrides(self, overrides: dict) -> "Estimator":
        return replace(self, **{k: v for k, v in overrides.items() if k != "name"})

    def describe(self) -> dict:
        return asdict(self)


@dataclass
class MRDResult:
    loglik: np.ndarray  # L(z; theta), per sample
    drops: np.ndarray  # d_k(z), shape (K, N)
    sigma: float
    positive_share: float  # share of (k, z) with d_k(z) > 0
    searched: list[dict] = field(default_factory=list)  # sigma auto's grid: sigma, positive_share


def perturbation_seed(seed: int, k: int) -> int:
    """Independent, reproducible noise stream per (seed, k): the same for every sample."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


@torch.no_grad()
def score_loglik(model, encoded, batch_size: int, pad_id: int, device) -> np.ndarray:
    """L(z) per sample, in the input order. Samples are batched by length so that little compute
    goes to padding; a sample's score does not depend on its batch-mates (right padding)."""
    order = np.argsort([len(e.input_ids) for e in encoded], kind="stable")
    scores = torch.cat([answer_log_likelihood(model, b)
                        for b in batches([encoded[i] for i in order], batch_size, pad_id, device)]).cpu().numpy()
    out = np.empty_like(scores)
    out[order] = scores
    return out


@torch.no_grad()
def token_logliks(model, encoded, batch_size: int, pad_id: int, device) -> np.ndarray:
    """(N, T) log-likelihood of every answer token, NaN past a sample's last one; input order."""
    rows = []
    for batch in batches(encoded, batch_size, pad_id, device):
        logp, mask = token_log_probs(model, batch)
        rows += [lp[m].cpu().numpy() for lp, m in zip(logp, mask)]
    out = np.full((len(rows), max(map(len, rows))), np.nan)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def _summed_relative_drop(base: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    return np.nansum(np.abs(base - perturbed) / np.abs(base), axis=1)


def thirdparty_drop(model, encoded, *, sigma: float = THIRDPARTY_SIGMA, K: int = THIRDPARTY_K, seed: int,
                    batch_size: int, pad_id: int, device) -> np.ndarray:
    """A public third-party reimplementation's reading of MRD (not the paper's, nor ours): per
    token the relative change |l_t(theta) - l_t(theta + delta_k)| / |l_t(theta)|, summed over the
    answer tokens, mean over K perturbations of absolute scale sigma. The weights are restored."""
    score = lambda m: token_logliks(m, encoded, batch_size, pad_id, device)  # noqa: E731
    _, drops = perturbation_drops(model, encoded, K=K, sigma=sigma, seed=seed, sigma_mode="absolute",
                                  batch_size=batch_size, pad_id=pad_id, device=device, score=score,
                                  compare=_summed_relative_drop)
    return drops.mean(axis=0)


@torch.no_grad()
def perturbation_drops(model, encoded, *, K: int, sigma: float, seed: int, sigma_mode: str, batch_size: int,
                       pad_id: int, device, base: np.ndarray | None = None, first_k: int = 0,
                       desc: str | None = None, score=None, compare=np.subtract):
    """Return (L(z; theta), d_k(z) for first_k <= k < K). Parameters are bit-identical afterwards.
    `score(model)` (default: L(z) per sample) and `compare(base, perturbed)` (default: the drop
    base - perturbed, per sample) give other readings on the same perturbations."""
    if sigma_mode not in SIGMA_MODES:
        raise ValueError(f"sigma_mode {sigma_mode!r}; allowed: {list(SIGMA_MODES)}")
    params = [p for p in model.parameters() if p.requires_grad]
    if score is None:
        score = lambda m: score_loglik(m, encoded, batch_size, pad_id, device)  # noqa: E731
    if base is None:
        base = score(model)
    original = [p.detach().clone() for p in params]  # the one extra copy of the parameters
    scales = [sigma * float(p.detach().float().pow(2).mean().sqrt()) if sigma_mode == "relative" else sigma
              for p in params]
    drops = np.empty((K - first_k, len(encoded)))

    def restore() -> None:
        for p, o in zip(params, original):
            p.copy_(o)

    try:
        for k in tqdm(range(first_k, K), desc=desc, disable=desc is None, leave=False):
            gen = torch.Generator(device=device).manual_seed(perturbation_seed(seed, k))
            for p, scale in zip(params, scales):
                p.add_(torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype), alpha=scale)
            drops[k - first_k] = compare(base, score(model))
            restore()
    except BaseException:
        restore()  # never hand back perturbed weights, even when interrupted
        raise
    return base, drops


class PerturbationScorer:
    """The drops of one model on one set of samples, for every (sigma_mode, sigma, seed) asked
    for, each perturbation computed once."""

    def __init__(self, model, encoded, *, batch_size: int, pad_id: int, device, progress: bool = True):
        model.eval()
        self.model, self.encoded = model, encoded
        self.kw = dict(batch_size=batch_size, pad_id=pad_id, device=device)
        self.progress = progress
        self.base = score_loglik(model, encoded, batch_size, pad_id, device)
        self._drops: dict[tuple, np.ndarray] = {}
        self.forward_passes = 1  # over the whole set, the unperturbed one included

    def drops(self, *, sigma: float, sigma_mode: str, seed: int, K: int) -> np.ndarray:
        key = (sigma_mode, float(sigma), seed)
        have = self._drops.get(key, np.empty((0, len(self.encoded))))
        if len(have) < K:
            desc = f"MRD {sigma_mode} sigma={sigma:g} seed={seed}" if self.progress else None
            _, new = perturbation_drops(self.model, self.encoded, K=K, first_k=len(have), sigma=float(sigma),
                                        seed=seed, sigma_mode=sigma_mode, base=self.base, desc=desc, **self.kw)
            self.forward_passes += len(new)
            have = self._drops[key] = np.concatenate([have, new])
        return have[:K]

    def estimate(self, estimator: Estimator, *, seed: int, sigma_grid: list[float] | None = None,
                 positive_share: float = 0.9) -> MRDResult:
        """Drops at the estimator's sigma, or with sigma 'auto' at the smallest grid value whose
        share of positive drops reaches `positive_share` (the curvature regime)."""
        kw = dict(sigma_mode=estimator.sigma_mode, seed=seed, K=estimator.K)
        if estimator.sigma != "auto":
            drops = self.drops(sigma=float(estimator.sigma), **kw)
            return MRDResult(self.base, drops, float(estimator.sigma), float((drops > 0).mean()))
        if not sigma_grid:
            raise ValueError("sigma 'auto' needs a non-empty sigma_grid")
        searched, best = [], None
        for s in sorted(sigma_grid):
            drops = self.drops(sigma=s, **kw)
            share = float((drops > 0).mean())
            searched.append({"sigma": s, "positive_share": share})
            if best is None or share > best.positive_share:
                best = MRDResult(self.base, drops, s, share)
            if share >= positive_share:
                best = MRDResult(self.base, drops, s, share)
                break
        best.searched = searched  # when no grid value reached the target: the most curvature-dominated one
        return best


def difficulty_drop(result: MRDResult, statistic: str, normalize: str) -> np.ndarray:
    """D(z): the mean drop (signed or absolute), optionally relative to |L(z)|."""
    if statistic not in STATISTICS or normalize not in NORMALIZATIONS:
        raise ValueError(f"statistic {statistic!r} / normalize {normalize!r}; allowed: {STATISTICS} / {NORMALIZATIONS}")
    d = result.drops if statistic == "signed" else np.abs(result.drops)
    D = d.mean(axis=0)
    if normalize == "relative":
        D = D / np.abs(result.loglik)
    return D


def mrd_from_drop(D: np.ndarray, eps: float) -> np.ndarray:
    return 1.0 / np.maximum(D, eps)


def score_mrd(model, tokenizer, samples: list[dict] | list, *, max_length: int | None = None, device=None,
              tau: float = 1.0, progress: bool = True, **settings):
    """MRD of every sample, as the workflow's MRD rule computes it: `(scores, info)`.

    `samples`: rows as the loader reads them (QA: question, answer; text: text) or already
    encoded samples. `settings`: any key of the config's `mrd` section (K, sigma, sigma_grid,
    positive_share, statistic, normalize, sigma_mode, eps, seed, batch_size), validated against
    the schema and defaulted as a study is. `scores` has one row per sample, in order: sample_id,
    mrd, drop (D, the mean likelihood drop: larger = easier), loglik, and the sampling weights
    weight_uniform and weight_mrd (p ~ D^(1/tau)); `info` records the estimator, the sigma it
    used, the share of positive drops and the cost.

        from torch.utils.data import WeightedRandomSampler
        scores, info = score_mrd(model, tokenizer, forget_rows, K=32)
        sampler = WeightedRandomSampler(scores.weight_mrd.tolist(), num_samples=len(scores))
    """
    import time

    import pandas as pd

    from .config import validate_config
    from .models import encode_sample
    from .sampling import mrd_weights

    cfg = validate_config({"name": "score_mrd", "mrd": settings})["mrd"]
    device = next(model.parameters()).device if device is None else torch.device(device)
    if max_length is None:
        max_length = getattr(model.config, "max_position_embeddings", None) or 10 ** 9
    encoded = [encode_sample(tokenizer, s, max_length) if isinstance(s, dict) else s for s in samples]
    start = time.perf_counter()
    scorer = PerturbationScorer(model, encoded, batch_size=cfg["batch_size"], pad_id=tokenizer.pad_token_id,
                                device=device, progress=progress)
    estimator = Estimator.from_config(cfg)
    result = scorer.estimate(estimator, seed=cfg["seed"], sigma_grid=cfg["sigma_grid"],
                             positive_share=cfg["positive_share"])
    drop = difficulty_drop(result, estimator.statistic, estimator.normalize)
    scores = pd.DataFrame({"sample_id": np.arange(len(encoded)), "mrd": mrd_from_drop(drop, cfg["eps"]),
                           "drop": drop, "loglik": result.loglik,
                           "weight_uniform": np.full(len(encoded), 1.0 / len(encoded)),
                           "weight_mrd": mrd_weights(drop, tau)})
    info = {**estimator.describe(), "sigma": result.sigma, "positive_share": result.positive_share,
            "sigma_search": result.searched, "seed": cfg["seed"], "n_samples": len(encoded), "tau": tau,
            "forward_passes": scorer.forward_passes, "wall_s": time.perf_counter() - start}
    return scores, info
