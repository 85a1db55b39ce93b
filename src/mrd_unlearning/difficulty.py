"""The difficulty scores MRD is compared with (the cheap ones and the field's): their registry, and
the pure functions that turn recorded quantities into per-sample scores. No model is loaded
here; `baselines` measures what needs one.

Each score has a kind and the sign of its correlation with the required updates that its
rationale predicts (+1: a higher score means a harder sample). The samplers read the sign to
order samples from easy to hard; the validation reports it beside the measured rho."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

MRD_SCORE = "mrd"
LEARNING_EVENTS = "learning_events.csv"  # in the target's checkpoint folder: per epoch and forget sample
SCORES: dict[str, tuple[str, int]] = {
    "mrd": ("mrd", 1),
    # cheap, on the target model: well-memorised (low loss), flat (small gradient) samples are hard;
    # longer answers hold more to remove
    "loss": ("baseline", -1), "grad_norm": ("baseline", -1), "max_token_nll": ("baseline", -1),
    "answer_tokens": ("baseline", 1),
    # the field's
    "mrd_thirdparty": ("third-party MRD", 1),  # 1 / its mean relative drop, oriented as MRD
    "entanglement": ("entanglement", 1),  # closer to the retain set than to the forget set: harder
    "learning_confidence": ("learning events", 1),  # learned confidently: memorised, harder
    "epoch_learned": ("learning events", -1),  # learned early: memorised, harder
    "forgetting_events": ("learning events", -1),  # forgotten during training: fragile, easier
    # need the retain model, which nobody has in practice
    "memorization": ("oracle", 1),
    "retain_model_loss_oracle": ("oracle", 1),
}


def harder_when_higher(score: str) -> bool:
    if score not in SCORES:
        raise ValueError(f"unknown difficulty score {score!r}; allowed: {sorted(SCORES)}")
    return SCORES[score][1] > 0


def entanglement(forget: np.ndarray, retain: np.ndarray) -> np.ndarray:
    """Per forget sample z with representation h(z) (rows of `forget`):
    ||h(z) - mu_F|| / ||h(z) - mu_R||, mu_F and mu_R the forget and retain sets' centroids. Above
    1 the sample lies nearer the retain set than its own: the per-sample form of Zhao et al.'s
    (2024) entanglement score, which divides the sets' spread around their centroids by the
    distance between the centroids."""
    forget, retain = np.asarray(forget, dtype=float), np.asarray(retain, dtype=float)
    to_forget = np.linalg.norm(forget - forget.mean(axis=0), axis=1)
    to_retain = np.linalg.norm(forget - retain.mean(axis=0), axis=1)
    return to_forget / to_retain


def learning_event_scores(events: pd.DataFrame) -> pd.DataFrame:
    """From one row per (epoch, sample_id) of fine-tuning, with the answer's probability and
    whether every answer token was the argmax (`learned`), per sample:
    - learning_confidence: the probability averaged over the epochs;
    - epoch_learned: the first epoch at which it was learned (never: the last epoch + 1);
    - forgetting_events: learned -> not learned transitions between consecutive epochs (Toneva
      et al. 2019)."""
    events = events.sort_values(["sample_id", "epoch"])
    last = int(events.epoch.max())
    rows = []
    for sample_id, part in events.groupby("sample_id", sort=True):
        learned = part.learned.astype(bool).to_numpy()
        epochs = part.epoch.to_numpy()
        rows.append({"sample_id": int(sample_id), "learning_confidence": float(part.probability.mean()),
                     "epoch_learned": int(epochs[learned][0]) if learned.any() else last + 1,
                     "forgetting_events": int((learned[:-1] & ~learned[1:]).sum())})
    return pd.DataFrame(rows)


def retain_level(retain_samples_csv: str) -> np.ndarray:
    """L(z) under the retain model, per forget sample: the level unlearning aims for."""
    reference = pd.read_csv(retain_samples_csv)
    return reference[reference.split == "forget"].sort_values("sample_id").loglik.to_numpy()


def difficulty_table(baselines_csv: str, retain_samples_csv: str, learning_events_csv: str | None = None
                     ) -> pd.DataFrame:
    """Every score but MRD's, per forget sample of one replicate: the baselines and the field's
    scores measured on the target model, the learning events recorded during its fine-tuning,
    memorization L_target(z) - L_retain(z) (Feldman's, with the mean answer log-likelihood as
    the measure) and the retain model's loss (the oracle)."""
    table = pd.read_csv(baselines_csv).sort_values("sample_id").reset_index(drop=True)
    retain = retain_level(retain_samples_csv)
    table["memorization"] = -table["loss"].to_numpy() - retain
    table["retain_model_loss_oracle"] = -retain
    if learning_events_csv is not None and Path(learning_events_csv).is_file():
        table = table.merge(learning_event_scores(pd.read_csv(learning_events_csv)), on="sample_id", how="left")
    return table


# C3 on any data: characteristics of a sample measured from its text and the models, for every
# data source (the synthetic generator's known factors stay beside them). No predicted sign.
CHARACTERISTICS = ("answer_tokens", "question_tokens", "token_rarity", "numeric_share", "name_share", "base_loglik",
                   "group_difficulty")
C3_KINDS = ("known factor", "sample characteristic")


def in_c3(score: str, kind: str) -> bool:
    """C3's family: the known factors and the characteristics (answer length is one, though
    the validation lists it once, as the baseline it also is)."""
    return kind in C3_KINDS or score == "answer_tokens"
MONTHS = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"}
_WORD = re.compile(r"[^\W_][\w'’-]*")


def numeric_share(text: str) -> float:
    """Share of the words that are numbers or dates (a digit in them, or a month's name)."""
    words = _WORD.findall(text)
    return sum(any(c.isdigit() for c in w) or w.lower() in MONTHS for w in words) / len(words) if words else 0.0


def name_share(text: str) -> float:
    """Share of the words that are capitalised away from a sentence's start: names, titles,
    places (a proxy for named entities, which need no model)."""
    words = capitalised = 0
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        tokens = _WORD.findall(sentence)
        words += len(tokens)
        capitalised += sum(w[0].isupper() for w in tokens[1:])
    return capitalised / words if words else 0.0


def token_rarity(ids: list[int], frequency: dict[int, float]) -> float:
    """Mean -log frequency of a sample's scored tokens in the fine-tuning set."""
    return float(np.mean([-np.log(frequency[t]) for t in ids])) if ids else float("nan")


def group_difficulty(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each sample's group mean difficulty without the sample itself (leave one out: the
    sample's own count must not predict itself); NaN where the sample is alone in its group."""
    values, groups = np.asarray(values, dtype=float), np.asarray(groups)
    frame = pd.DataFrame({"v": values, "g": groups})
    total, count = frame.groupby("g").v.transform("sum"), frame.groupby("g").v.transform("count")
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((total - frame.v) / (count - 1)).where(count > 1).to_numpy(float)
