"""Cheap difficulty scores MRD must beat (STUDY 3.5): loss, per-sample gradient norm, max-token
NLL and answer length, all on the model MRD scores. The known factors (synthetic data) and the
retain-model oracle come from elsewhere (the generator, the retain model's evaluation)."""
from __future__ import annotations

import pandas as pd
import torch
from tqdm.auto import tqdm

from .models import collate, nll_loss, token_log_probs


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


