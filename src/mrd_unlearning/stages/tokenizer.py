"""Rules tokenizer and check_lengths: the tiny model's tokenizer, and every row measured against
model.max_length with the model's own tokenizer before anything trains."""
from __future__ import annotations

from ..data.loader import DataError, load_study_data, located_rows
from ..io import atomic_path, write_json
from ..models import load_tokenizer, sequence_lengths, train_tokenizer


def check_lengths(data_dir: str, out_json: str, *, max_length: int, base: str | None = None,
                  name_or_path: str | None = None) -> None:
    """Every sequence any stage builds from the study's rows (samples, paraphrases, wrong
    answers, text) against model.max_length, with the model's own tokenizer and prompt format
    (from the `base` folder fine-tuning starts from, else the model's `name_or_path`), before any
    model trains: a too-long row is named by file, line and length."""
    data = load_study_data(data_dir)
    tokenizer = load_tokenizer(base or name_or_path)
    longest: dict[str, int] = {}
    too_long = []
    for role, where, row in located_rows(data):
        for what, n in sequence_lengths(tokenizer, row):
            longest[role] = max(longest.get(role, 0), n)
            if n > max_length:
                too_long.append(f"{where} ({role}, {what}): {n} tokens")
    if too_long:
        raise DataError(f"{len(too_long)} sequence(s) longer than model.max_length={max_length} (raise it, or "
                        f"shorten or drop these rows):\n  " + "\n  ".join(too_long[:20])
                        + ("\n  ..." if len(too_long) > 20 else ""))
    write_json(out_json, {"max_length": max_length, "longest": longest, "kind": data.kind,
                          "rows": {role: len(rows) for role, rows in data.roles().items()}})


def build_tokenizer(data_dir: str, out_dir: str, *, vocab_size: int) -> None:
    data = load_study_data(data_dir)
    texts = []
    for rows in (data.full, data.holdout, data.forget_eval, data.retain_eval):
        for r in rows:
            texts += [r.get("question", ""), r.get("answer", ""), r.get("text", ""), r.get("paraphrased_answer", ""),
                      *r.get("perturbed_answer", [])]
    tokenizer = train_tokenizer(texts, vocab_size)
    with atomic_path(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
