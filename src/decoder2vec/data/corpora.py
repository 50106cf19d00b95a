"""Text corpora for MNTP (documents) and SimCSE (sentences): packaged sources (registry.py), local
files, or Hugging Face datasets by name, all read through `datasets`.

`load_texts(source)` returns documents; `load_sentences(source)` splits them into sentences of a
sensible length. A source is a packaged name (`wikipedia-en`, `libreoffice-help-en|da|de`, ...), a
local .txt (one text per line) / .jsonl / .csv / .parquet file, or a hub dataset id
("name", "name:config" or "name:config:split"; the split defaults to "train").
"""

from __future__ import annotations

import csv
import os
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


def check_data_file(path: str | Path, what: str = "data file") -> Path:
    """`path` if it is a regular file, else an error that says what it is instead (missing, a
    directory, a FIFO or device: reading one would block or fail in a library's words)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not os.path.lexists(path):
        raise Decoder2VecError(f"{what} not found: {path}")
    if path.is_dir():
        raise Decoder2VecError(f"{what} {path} is a directory, not a file; give a file in it")
    raise Decoder2VecError(f"{what} {path} is not a regular file (a FIFO, socket, device or broken link); "
                           "give a file")


def first_non_utf8(path: Path) -> tuple[int, int, int] | None:
    """(line, column, byte) of the first byte of `path` that is not UTF-8, 1-based; None if none."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, exc.start + 1, raw[exc.start]
    return None


def not_utf8_error(path: Path) -> Decoder2VecError | None:
    """The one-line error for a text file that is not UTF-8 (the words `encode` uses), or None."""
    found = first_non_utf8(path)
    if found is None:
        return None
    line, column, byte = found
    return Decoder2VecError(f"{path}:{line}: not UTF-8 (byte {byte:#04x} at column {column}); convert the file, "
                            "e.g. iconv -f latin1 -t utf-8")


def row_location(path: Path, row: int, rows: int) -> str:
    """Where table row `row` (0-based, of `rows`) of a local file is, for an error: `file:line`
    for .jsonl/.csv (blank lines skipped, as the readers skip them; a CSV row may span lines),
    else `file row N` (1-based)."""
    lines: list[int] = []
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with open(path, "rb") as f:
            lines = [number for number, line in enumerate(f, 1) if line.strip()]
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            next(reader, None)  # the header
            end = reader.line_num
            for record in reader:
                if record:
                    lines.append(end + 1)
                end = reader.line_num
    if len(lines) == rows:  # a .json array, or a file the reader saw otherwise: rows, not lines
        return f"{path}:{lines[row]}"
    return f"{path} row {row + 1}"


def is_local_file(source: str) -> bool:
    """A source `load_table` reads as a local file (else as a hub dataset id)."""
    path = Path(source).expanduser()
    return path.suffix.lower() in LOCAL_FORMATS or os.path.lexists(path)


def load_table(source: str, split: str = "train"):
    """A `datasets.Dataset` from a local file or a hub dataset ("name[:config[:split]]")."""
    path = Path(source).expanduser()
    if is_local_file(source):
        check_data_file(path)
        builder = LOCAL_FORMATS.get(path.suffix.lower())
        if builder is None:
            raise Decoder2VecError(
                f"unsupported data file type {path.suffix!r} for {source}; use {', '.join(LOCAL_FORMATS)}"
            )
        try:
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as exc:  # datasets wraps a reader's error in a traceback-long one: say which line
            bad = not_utf8_error(path) if builder != "parquet" else None
            reason = " ".join(str(exc.__cause__ or exc).split())[:300]
            raise (bad or Decoder2VecError(f"data file {path} could not be read as {builder}: {reason}")) from None
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
