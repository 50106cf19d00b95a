"""Word vectors from token vectors: sub-word tokens -> one vector per word.

`Encoder.encode(..., output_value="token_embeddings")` gives each text's token vectors with their
character offsets; a word is a character span of the text (whitespace-separated by default,
`word_spans`). `aggregate` gives each word the vector of its first token ("first") or the mean of
its tokens ("mean"). A token belongs to every word its non-empty character range overlaps, so a
token that crosses a word boundary (a tokenizer that merges "a." when the words are "a" and ".")
counts for both. A word with no token (cut off by max_length) is an error, never a zero vector.
Plain numpy: works with any model that gives token vectors and offsets.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..errors import Decoder2VecError, choices_error

AGGREGATIONS = ("first", "mean")


def word_spans(text: str) -> np.ndarray:
    """[start, end) character spans of the whitespace-separated words of `text`, (n_words, 2)."""
    return np.array([m.span() for m in re.finditer(r"\S+", text)], dtype=np.int64).reshape(-1, 2)


def join_words(words: Sequence[str]) -> tuple[str, np.ndarray]:
    """Pre-split words (CoNLL style) -> (the words joined by single spaces, their spans)."""
    spans, start = [], 0
    for i, word in enumerate(words):
        if not word or word != word.strip() or any(c.isspace() for c in word):
            raise Decoder2VecError(f"words[{i}] = {word!r}: a word must be non-empty with no whitespace")
        spans.append((start, start + len(word)))
        start += len(word) + 1
    return " ".join(words), np.array(spans, dtype=np.int64).reshape(-1, 2)


def token_word_matrix(offsets: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """(n_words, n_tokens) bool: word w contains (overlaps) token t. Empty-range tokens (a
    whitespace token whose offsets were trimmed) belong to no word."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    starts, ends = offsets[:, 0][None, :], offsets[:, 1][None, :]
    return (starts < spans[:, 1:2]) & (ends > spans[:, 0:1]) & (ends > starts)


def aggregate(token_embeddings, offsets, spans, how: str = "mean", *, where: str = "text") -> np.ndarray:
    """One vector per word span: the first overlapping token's vector, or the mean of them.
    token_embeddings (n_tokens, dim), offsets (n_tokens, 2), spans (n_words, 2) -> (n_words, dim)."""
    if how not in AGGREGATIONS:
        raise choices_error("word aggregation", how, AGGREGATIONS)
    vectors = np.asarray(token_embeddings, dtype=np.float32)
    member = token_word_matrix(offsets, spans)
    counts = member.sum(1)
    if (counts == 0).any():
        w = int(np.flatnonzero(counts == 0)[0])
        span = tuple(int(x) for x in np.asarray(spans).reshape(-1, 2)[w])
        raise Decoder2VecError(f"{where}: word {w} (characters {span[0]}..{span[1]}) has no token: cut off by "
                               "max_length, or a span outside the text")
    if how == "first":
        return vectors[member.argmax(1)]
    return (member.astype(np.float32) @ vectors) / counts[:, None].astype(np.float32)


def encode_words(encoder, texts: Sequence[str], spans: Sequence[np.ndarray] | None = None, *,
                 how: str = "mean", **encode_options) -> list[np.ndarray]:
    """Word vectors of each text, (n_words, dim) per text: `encoder.encode(texts,
    output_value="token_embeddings")` then `aggregate`. spans: per text, its word spans (default:
    whitespace-separated words, `word_spans`)."""
    texts = list(texts)
    if spans is None:
        spans = [word_spans(t) for t in texts]
    if len(spans) != len(texts):
        raise Decoder2VecError(f"spans has {len(spans)} entries for {len(texts)} texts: give one per text")
    tokens = encoder.encode(texts, output_value="token_embeddings", **encode_options)
    if len(tokens) != len(texts):
        raise Decoder2VecError(f"encode returned {len(tokens)} results for {len(texts)} texts (on_empty='skip'?): "
                               "words need one per text")
    return [aggregate(t["token_embeddings"], t["offsets"], s, how, where=f"texts[{i}]")
            for i, (t, s) in enumerate(zip(tokens, spans))]
