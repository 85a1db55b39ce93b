"""The difficulty scores measured on the target model beside MRD: the cheap ones MRD must beat
(loss, per-sample gradient norm, max-token NLL, answer length) and the field's
(entanglement, a third-party reading of MRD), and C3's sample characteristics. Their registry and the scores computed from other
records (learning events, memorization, the oracle) are in `difficulty`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from collections import Counter

from .difficulty import entanglement, name_share, numeric_share, token_rarity
from .models import IGNORE, batches, collate, nll_loss, token_log_probs
from .mrd import mrd_from_drop, thirdparty_drop


def cheap_scores(model, encoded, *, pad_id: int, device, desc: str | None = "baselines") -> pd.DataFrame:
    """One sample at a time: its gradient norm must not mix with other samples'."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    model.eval()  # no dropout: the same scores as MRD's unperturbed pass
    for i, sample in enumerate(tqdm(encoded, desc=desc, disable=desc is None, leave=False)):
        batch = collate([sample], pad_id, device)
        with torch.no_grad():
            logp, mask = token_log_probs(model, batch)
        nll = -logp[mask]
        grads = torch.autograd.grad(nll_loss(model, batch), params)
        rows.append({"sample_id": i, "loss": float(nll.mean()), "max_token_nll": float(nll.max()),
                     "grad_norm": float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))),
                     "answer_tokens": int(mask.sum())})
    model.zero_grad(set_to_none=True)
    return pd.DataFrame(rows)


@torch.no_grad()
def mean_hidden_states(model, encoded, *, batch_size: int, pad_id: int, device) -> np.ndarray:
    """Per sample, the last layer's hidden state averaged over its tokens (question and answer)."""
    out = []
    for batch in batches(encoded, batch_size, pad_id, device):
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True).hidden_states[-1].double()
        mask = batch["attention_mask"].unsqueeze(-1).double()
        out.append(((hidden * mask).sum(1) / mask.sum(1)).cpu().numpy())
    return np.concatenate(out)


def field_scores(model, forget, retain, *, batch_size: int, pad_id: int, device, seed: int,
                 eps: float) -> pd.DataFrame:
    """Entanglement against the `retain` samples' centroid, and the third-party MRD reading
    (1 / its mean relative drop, oriented as MRD; perturbation seed `seed`)."""
    kw = dict(batch_size=batch_size, pad_id=pad_id, device=device)
    model.eval()
    ent = entanglement(mean_hidden_states(model, forget, **kw), mean_hidden_states(model, retain, **kw))
    drop = thirdparty_drop(model, forget, seed=seed, **kw)
    return pd.DataFrame({"sample_id": np.arange(len(forget)), "entanglement": ent,
                         "mrd_thirdparty": mrd_from_drop(drop, eps)})


def sample_characteristics(tokenizer, rows: list[dict], encoded, training) -> pd.DataFrame:
    """C3's characteristics that need only the tokenizer: the question's length in tokens (QA),
    the rarity of the scored tokens in the fine-tuning set (`training`: its encoded samples),
    and the share of numbers or dates and of capitalised words in the answer (or text)."""
    counts = Counter(t for e in training for t in e.labels if t != IGNORE)
    total = sum(counts.values())
    frequency = {t: c / total for t, c in counts.items()}
    return pd.DataFrame({
        "sample_id": np.arange(len(rows)),
        "question_tokens": [len(tokenizer.encode(r["question"], add_special_tokens=False)) if "question" in r
                            else np.nan for r in rows],
        "token_rarity": [token_rarity([t for t in e.labels if t != IGNORE], frequency) for e in encoded],
        "numeric_share": [numeric_share(r.get("answer", r.get("text", ""))) for r in rows],
        "name_share": [name_share(r.get("answer", r.get("text", ""))) for r in rows],
    })
