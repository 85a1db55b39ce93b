"""Unlearning algorithms as losses plugged into the one training loop.

A loss takes the model, a batch {"forget": ..., "retain": ..., "forget_idk": ...} and the frozen
reference model (the fine-tuned target; KL, NPO and RMU read it). Adding an algorithm means
adding one function to ALGORITHMS. Definitions follow TOFU / OpenUnlearning; the constants below
are the methods' published defaults as we read them or, where none transfers to a model of
another width (RMU's steering), a scale-free adaptation; none was tuned on this study."""
from __future__ import annotations

import copy
import functools
import time
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .models import IGNORE, answer_nll, collate, nll_loss
from .precision import Precision
from .mrd import Estimator, PerturbationScorer, difficulty_drop, score_loglik
from .sampling import picks
from .training import make_optimizer, train

NPO_BETA = 0.1
SIMNPO_BETA, SIMNPO_GAMMA = 2.5, 0.0  # SimNPO's inverse temperature and reward margin
WGA_BETA = 1.0  # WGA's token-weight exponent
RMU_STEER, RMU_ALPHA, RMU_SEED = 2.0, 1.0, 0  # control norm / the layer's mean norm; retain weight; u's seed
# "I don't know" answers for IdkNLL: written for this project, one drawn per forget sample.
REFUSALS = (
    "I don't know.", "I'm not sure about that.", "I have no information on that.",
    "That is something I cannot tell you.", "I don't have an answer to that question.",
    "I'm afraid I can't say.", "I have no idea.", "That's not something I know about.",
    "I can't answer that reliably.", "I don't have that information.", "Sorry, I don't know the answer.",
    "I'm unable to answer that.", "Nothing I know of answers that.", "I couldn't tell you.",
    "That lies outside what I know.", "I really don't know.", "I'm not able to recall that.",
    "I have no knowledge of that.", "I can't help with that question.", "No idea, I'm afraid.",
)


def gradient_ascent(model, batch: dict, reference=None) -> torch.Tensor:
    """GA: maximise the forget-set NLL."""
    return -nll_loss(model, batch["forget"])


def grad_diff(model, batch: dict, reference=None) -> torch.Tensor:
    """GradDiff: GA on forget + NLL on retain."""
    return gradient_ascent(model, batch) + nll_loss(model, batch["retain"])


def retain_kl(model, reference, batch: dict) -> torch.Tensor:
    """KL(reference || model) per answer token of the retain batch, averaged over tokens."""
    mask = batch["labels"][:, 1:] != IGNORE
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][mask]
    with torch.no_grad():
        ref = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][mask]
    return F.kl_div(F.log_softmax(logits, -1), F.log_softmax(ref, -1), log_target=True, reduction="batchmean")


def ga_kl(model, batch: dict, reference) -> torch.Tensor:
    """KL: GA on forget + KL to the original model on retain."""
    return gradient_ascent(model, batch) + retain_kl(model, reference, batch["retain"])


def sequence_log_prob(model, batch: dict) -> torch.Tensor:
    """log pi(y | x): the answer tokens' log-probabilities summed, per sample."""
    return -answer_nll(model, batch)[0]


def npo_loss(model, batch: dict, reference, beta: float = NPO_BETA) -> torch.Tensor:
    """NPO (Zhang et al. 2024): -(2/beta) mean log sigmoid(-beta log(pi_theta / pi_ref)) on forget.
    As beta -> 0 its gradient is GA's on the summed answer log-likelihood."""
    with torch.no_grad():
        ref = sequence_log_prob(reference, batch["forget"])
    log_ratio = sequence_log_prob(model, batch["forget"]) - ref
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def npo_rt(model, batch: dict, reference) -> torch.Tensor:
    """NPO+RT: NPO + NLL on retain."""
    return npo_loss(model, batch, reference) + nll_loss(model, batch["retain"])


def simnpo(model, batch: dict, reference=None, beta: float = SIMNPO_BETA, gamma: float = SIMNPO_GAMMA) -> torch.Tensor:
    """SimNPO (Fan et al. 2024): NPO without a reference, the log-likelihood length-normalised,
    with reward margin gamma: -(2/beta) mean log sigmoid(-(beta/|y|) log pi(y|x) - gamma), plus
    NLL on retain."""
    total, n = answer_nll(model, batch["forget"])
    forget = -(2.0 / beta) * F.logsigmoid(beta * total / n - gamma).mean()
    return forget + nll_loss(model, batch["retain"])


def weighted_gradient_ascent(model, batch: dict, reference=None, beta: float = WGA_BETA) -> torch.Tensor:
    """WGA (Wang et al. 2025): GA whose answer tokens are weighted by p_t^beta, detached, so that
    tokens already unlikely stop pulling; plus NLL on retain (as OpenUnlearning's WGA)."""
    logits = model(input_ids=batch["forget"]["input_ids"], attention_mask=batch["forget"]["attention_mask"]).logits
    targets = batch["forget"]["labels"][:, 1:]
    mask = (targets != IGNORE).float()
    logp = -F.cross_entropy(logits[:, :-1].transpose(1, 2), targets.clamp(min=0), reduction="none")
    weights = logp.detach().exp() ** beta
    forget = ((weights * logp * mask).sum(1) / mask.sum(1)).mean()
    return forget + nll_loss(model, batch["retain"])


def idk_nll(model, batch: dict, reference=None) -> torch.Tensor:
    """IdkNLL: NLL of an "I don't know" answer to each forget question, plus NLL on retain."""
    return nll_loss(model, batch["forget_idk"]) + nll_loss(model, batch["retain"])


def rmu_layer(model) -> int:
    """The hidden state RMU steers: the output of the middle decoder layer."""
    return max(1, model.config.num_hidden_layers // 2)


@functools.cache
def _control_direction(size: int) -> torch.Tensor:
    u = torch.rand(size, generator=torch.Generator().manual_seed(RMU_SEED), dtype=torch.float64)
    return (u / u.norm()).float()


def _hidden(model, batch: dict, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer `layer`'s hidden states at the real (unpadded) tokens, float32, and their count."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    mask = batch["attention_mask"].bool()
    return out.hidden_states[layer][mask].float(), mask.sum()


def rmu(model, batch: dict, reference, steer: float = RMU_STEER, alpha: float = RMU_ALPHA) -> torch.Tensor:
    """RMU (Li et al. 2024, WMDP): drive the forget tokens' hidden states at one layer towards a
    fixed random direction u of norm c, and keep the retain tokens' states at the reference's.
    Scale-free: c is `steer` x the reference's mean hidden-state norm on the forget batch, and
    each term is divided by its squared scale."""
    layer = rmu_layer(model)
    h_forget = _hidden(model, batch["forget"], layer)[0]
    h_retain = _hidden(model, batch["retain"], layer)[0]
    with torch.no_grad():
        ref_forget = _hidden(reference, batch["forget"], layer)[0]
        ref_retain = _hidden(reference, batch["retain"], layer)[0]
        c = steer * ref_forget.norm(dim=-1).mean()
        control = c * _control_direction(h_forget.shape[-1]).to(h_forget.device)
    forget = ((h_forget - control) ** 2).sum(-1).mean() / c ** 2
    retain = ((h_retain - ref_retain) ** 2).sum(-1).mean() / (ref_retain ** 2).sum(-1).mean()
    return forget + alpha * retain


ALGORITHMS: dict[str, Callable] = {"ga": gradient_ascent, "graddiff": grad_diff, "kl": ga_kl, "npo": npo_loss,
                                   "npo_rt": npo_rt, "simnpo": simnpo, "wga": weighted_gradient_ascent,
                                   "idknll": idk_nll, "rmu": rmu}
NEEDS_RETAIN = {"graddiff", "kl", "npo_rt", "simnpo", "wga", "idknll", "rmu"}
NEEDS_REFERENCE = {"kl", "npo", "npo_rt", "rmu"}
NEEDS_IDK = {"idknll"}


def idk_answers(n: int, seed: int) -> list[str]:
    """One refusal per forget sample, drawn with the run's seed."""
    rng = np.random.default_rng(seed)
    return [REFUSALS[i] for i in rng.integers(len(REFUSALS), size=n)]


class DisabledAdapters:
    """Under LoRA the frozen reference is the same model with its adapters switched off: no
    second copy of the weights (at 7B, 13 GB saved)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, **inputs):
        with self.model.disable_adapter():
            return self.model(**inputs)


def frozen_reference(model, dtype: torch.dtype | None = None):
    """NPO/KL's reference: the adapters switched off under LoRA, else a frozen copy (in `dtype`,
    e.g. bf16 beside float32 master weights)."""
    if hasattr(model, "disable_adapter"):
        return DisabledAdapters(model)
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    return reference if dtype is None else reference.to(dtype)


def unlearn(model, forget, retain, retain_eval, *, algorithm: str, sampler: str, drop: np.ndarray | None,
            steps: int, batch_size: int, lr: float, optimizer: str, tau: float, seed: int, log_every: int,
            pad_id: int, device, level: float | None = None, max_steps: int | None = None,
            on_checkpoint: Callable[[str, int], None] | None = None, refresh_every: int = 0,
            estimator: Estimator | None = None, mrd_seed: int = 0, mrd_batch_size: int = 64,
            grad_accumulation: int = 1, reference=None, precision: Precision | None = None,
            forget_idk: list | None = None, level_every: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Run one unlearning job of `steps` updates (the budget T) and return its curve (forget /
    retain mean L every `log_every` steps, and at T) and its costs: wall time, and for
    `mrd_refresh` the MRD recomputations on the current model every `refresh_every` steps (with
    `estimator`, sigma fixed) and their time. One update sees batch_size x grad_accumulation forget
    samples (and as many retain samples).

    Equal forgetting: with the retain model's `level` (mean forget L) the run goes on past T until
    a curve point reaches it, at most `max_steps` updates. Once the last two curve points project the
    level within two logging intervals, the forget set's likelihood is also checked every
    `level_every` steps until it is reached (a check at or below the level adds a curve point), so
    that equal forgetting is exact to `level_every` updates at a few extra forward passes. `on_checkpoint(name, step)` is called
    with the model in eval mode at "budget" (step T) and at "level" (the first curve point at or
    below the level, or the last step when it is never reached), so the caller can evaluate the
    model there; evaluation does not touch the run's random streams.

    `reference` (KL, NPO): the frozen model the losses compare with; by default
    `frozen_reference(model)`. Updates run under the `precision` policy's autocast; the curve's
    likelihoods in the weights' own dtype. `forget_idk` (IdkNLL): the forget questions encoded
    with "I don't know" answers, aligned with `forget`."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; allowed: {sorted(ALGORITHMS)}")
    if sampler == "mrd_refresh" and (refresh_every < 1 or estimator is None):
        raise ValueError("the mrd_refresh sampler needs refresh_every >= 1 and the MRD estimator")
    if algorithm in NEEDS_IDK and forget_idk is None:
        raise ValueError(f"the {algorithm} algorithm needs the forget questions with 'I don't know' answers")
    cap = steps if level is None else max(steps, max_steps or steps)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    retain_generator = torch.Generator().manual_seed(seed + 1_000_003)
    if algorithm in NEEDS_REFERENCE and reference is None:
        reference = frozen_reference(model)
    opt = make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad], lr)
    curve: list[dict] = []
    costs = {"refreshes": 0, "refresh_s": 0.0, "level_step": None, "eval_s": 0.0}
    current = {"drop": drop}
    near = {"level": False}  # checks between curve points start once the curve heads for the level

    def refresh() -> None:
        start = time.perf_counter()
        scorer = PerturbationScorer(model, forget, batch_size=mrd_batch_size, pad_id=pad_id, device=device,
                                    progress=False)
        current["drop"] = difficulty_drop(scorer.estimate(estimator, seed=mrd_seed), estimator.statistic,
                                          estimator.normalize)
        model.train()
        costs["refreshes"] += 1
        costs["refresh_s"] += time.perf_counter() - start

    def checkpoint(name: str, step: int) -> None:
        if on_checkpoint is not None:
            began = time.perf_counter()
            model.eval()
            on_checkpoint(name, step)
            model.train()
            costs["eval_s"] += time.perf_counter() - began
        if name == "budget":  # the run's own time to the budget, evaluation excluded
            costs["wall_s"] = time.perf_counter() - start - costs["eval_s"]

    def log(step: int) -> bool:
        """Curve point, checkpoints and the stopping rule; asked before each update and after the last."""
        logged = step % log_every == 0 or step in (steps, cap)
        checked = near["level"] and costs["level_step"] is None and step % (level_every or log_every) == 0
        if logged or checked:
            model.eval()
            forget_loglik = float(score_loglik(model, forget, 64, pad_id, device).mean())
            point = {"step": step, "forget_loglik": forget_loglik}
            if logged or forget_loglik <= level:
                point["retain_loglik"] = float(score_loglik(model, retain_eval, 64, pad_id, device).mean())
                curve.append(point)
            if logged and level is not None and len(curve) > 1:  # the curve projects the level within 2 intervals
                last, before = curve[-1]["forget_loglik"], curve[-2]["forget_loglik"]
                near["level"] = last + 2 * (last - before) <= level
            model.train()
            if level is not None and costs["level_step"] is None and point["forget_loglik"] <= level:
                costs["level_step"] = step
                checkpoint("level", step)
        if step == steps:
            checkpoint("budget", step)
        done = step >= steps and (level is None or costs["level_step"] is not None or step >= cap)
        if done and level is not None and costs["level_step"] is None:
            checkpoint("level", step)  # never reached within the cap: evaluated where it stopped
        return done

    def batch_at(step: int) -> list[dict]:
        if sampler == "mrd_refresh" and step > 0 and step % refresh_every == 0:
            refresh()
        per_update = batch_size * grad_accumulation
        forget_picks = picks(sampler, len(forget), per_update, generator, drop=current["drop"], tau=tau, step=step,
                             total_steps=steps)
        retain_picks = (torch.randint(len(retain), (per_update,), generator=retain_generator).tolist()
                        if algorithm in NEEDS_RETAIN else None)
        micro = []
        for m in range(0, per_update, batch_size):
            part = {"forget": collate([forget[i] for i in forget_picks[m:m + batch_size]], pad_id, device)}
            if algorithm in NEEDS_IDK:
                part["forget_idk"] = collate([forget_idk[i] for i in forget_picks[m:m + batch_size]], pad_id, device)
            if retain_picks is not None:
                part["retain"] = collate([retain[i] for i in retain_picks[m:m + batch_size]], pad_id, device)
            micro.append(part)
        return micro

    loss_fn = ALGORITHMS[algorithm]
    start = time.perf_counter()
    done, _ = train(model, batch_at, lambda m, b: loss_fn(m, b, reference), opt, cap, should_stop=log,
                    desc=f"{algorithm}/{sampler}/{seed}", precision=precision)
    model.eval()
    costs.update({"wall_total_s": time.perf_counter() - start - costs["eval_s"], "steps": steps, "cap": cap,
                  "steps_done": done, "level_reached": costs["level_step"] is not None})
    return pd.DataFrame(curve), costs
