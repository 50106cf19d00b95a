"""Text corpora for MNTP (documents) and SimCSE (sentences): packaged sources (registry.py), local
files, or Hugging Face datasets by name, all read through `datasets`.

`load_texts(source)` returns documents; `load_sentences(source)` splits them into sentences of a
sensible length. A source is a packaged name (`wikipedia-en`, `libreoffice-help-en|da|de`, ...), a
local .txt (one text per line) / .jsonl / .csv / .parquet file, or a hub dataset id
("name", "name:config" or "name:config:split"; the split defaults to "train").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import datasets

from ..errors import Decoder2VecError
from . import registry


def packaged_corpora() -> dict[str, Callable[[], list[str]]]:
    """Every packaged corpus name -> its loader."""
    return registry.CORPORA


LOCAL_FORMATS = {".txt": "text", ".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def load_table(source: str, split: str = "train"):
    """A `datasets.Dataset` from a local file or a hub dataset ("name[:config[:split]]")."""
    path = Path(source).expanduser()
    if path.suffix.lower() in LOCAL_FORMATS or path.exists():
        if not path.is_file():
            raise Decoder2VecError(f"data file not found: {source}")
        builder = LOCAL_FORMATS.get(path.suffix.lower())
        if builder is None:
            raise Decoder2VecError(
                f"unsupported data file type {path.suffix!r} for {source}; use {', '.join(LOCAL_FORMATS)}"
            )
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    name, _, rest = source.partition(":")
    config, _, hub_split = rest.partition(":")
    hub_split = hub_split or split
    if hub_split == "test":
        raise Decoder2VecError(f"refusing to train on a test split: {source}")
    try:
        return datasets.load_dataset(name, config or None, split=hub_split)
    except Exception as exc:  # offline, unknown name, bad config: one clear message
        raise Decoder2VecError(
            f"data source {source!r} is not a packaged name ({', '.join(registry.NAMES)}), "
            f"not a local file, and the Hugging Face dataset failed to load: {exc}"
        ) from exc


def load_texts(source: str, *, text_column: str = "text", limit: int | None = None) -> list[str]:
    """Non-empty texts (documents) of one source, in order; at most `limit`."""
    registry.refuse_evaluation_only(source)
    if source in registry.CORPORA:
        texts = registry.CORPORA[source]()
    elif source in registry.SENTENCES:
        texts = registry.SENTENCES[source]()
    else:
        table = load_table(source)
        if text_column not in table.column_names:
            raise Decoder2VecError(
                f"{source} has no column {text_column!r} (columns: {', '.join(table.column_names)}); "
                "set text_column"
            )
        texts = [str(t) for t in table[text_column] if t is not None]
    texts = [t.strip() for t in texts if t and t.strip()]
    return texts[:limit] if limit else texts


# A sentence ends at . ! or ? followed by space and an upper-case letter, digit or quote, or at a
# newline; good enough for Wikipedia and help pages, and no model download.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-ZÆØÅÄÖÜ0-9])|\n+")


def split_sentences(text: str, *, min_words: int = 5, max_words: int = 60) -> list[str]:
    """Sentences of `text` with min_words..max_words words (others dropped)."""
    out = []
    for piece in _SENTENCE_END.split(text):
        sentence = " ".join(piece.split())
        if min_words <= len(sentence.split()) <= max_words:
            out.append(sentence)
    return out


def load_sentences(
    source: str, *, text_column: str = "text", min_words: int = 5, max_words: int = 60, limit: int | None = None
) -> list[str]:
    """Unique sentences of a source, in first-seen order; at most `limit`. A SENTENCES source
    (already one sentence per item, e.g. Wiki1M) is read as it is: never re-split or deduplicated,
    only kept to min_words..max_words words, as the reference reads it."""
    registry.refuse_evaluation_only(source)
    if source in registry.SENTENCES:
        kept = [s.strip() for s in registry.SENTENCES[source]() if min_words <= len(s.split()) <= max_words]
        return kept[:limit] if limit else kept
    seen: dict[str, None] = {}
    for text in load_texts(source, text_column=text_column):
        for sentence in split_sentences(text, min_words=min_words, max_words=max_words):
            seen.setdefault(sentence, None)
            if limit and len(seen) >= limit:
                return list(seen)
    return list(seen)
