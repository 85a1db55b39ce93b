"""Samples from a corpus (MUSE's and WMDP's forget and retain corpora): each document cut into
consecutive pieces of a configured number of tokens, each piece a text row with its document as
its group, so that MRD, the field's scores, the ground truths and the samplers work on corpus
samples as on any text row, and intervals can speak about documents.

Unlike the reference trainers, which join a corpus into one token stream and cut it into
fixed-length windows (the last one topped up from the first), a piece never spans two documents
and nothing is repeated: a sample's difficulty then belongs to one document, and every token of
the corpus is in exactly one sample."""
from __future__ import annotations

from .loader import CUT, GROUP, TEXT, DataError


def chunk_documents(documents: list[str], tokenizer, chunk_tokens: int, groups: list[str] | None = None) -> list[dict]:
    """Text rows `{text, group, tokens: [first, end), _cut}`: each document, tokenized without
    special tokens, cut at token boundaries every `chunk_tokens` tokens (its last piece may be
    shorter). The pieces of a document concatenate to it exactly; `tokens` is each piece's span in
    the document's tokens; `_cut` marks every piece but the last, which alone ends with EOS when
    encoded (a document does not end where a piece is cut). `groups` names the documents (default `doc<i>`); empty documents are
    skipped."""
    if chunk_tokens < 1:
        raise DataError(f"chunk length must be a positive number of tokens, got {chunk_tokens}")
    if groups is not None and len(groups) != len(documents):
        raise DataError(f"{len(groups)} group names for {len(documents)} documents")
    rows = []
    for d, text in enumerate(documents):
        if not isinstance(text, str):
            raise DataError(f"document {d}: expected a string, got {type(text).__name__}")
        starts = [start for start, _ in tokenizer(text, add_special_tokens=False,
                                                   return_offsets_mapping=True)["offset_mapping"]]
        n = len(starts)
        for first in range(0, n, chunk_tokens):
            end = min(first + chunk_tokens, n)
            begin_char = 0 if first == 0 else starts[first]
            end_char = len(text) if end == n else starts[end]
            rows.append({TEXT: text[begin_char:end_char], GROUP: groups[d] if groups is not None else f"doc{d}",
                         "tokens": [first, end], CUT: end < n})
    return rows
