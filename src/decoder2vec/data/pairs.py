"""Pair sets for supervised contrastive training: (query, positive, hard negatives).

A source is a packaged name (registry.PAIRS: `stsb-en-train`, `libreoffice-en-da-train`, ...) or
a prefixed one (registry.PAIR_PREFIXES), a local .jsonl/.csv/.parquet file, or a hub dataset id ("name[:config[:split]]")
with query/positive(/negative) columns under any of the usual names (anchor/positive/negative,
query/pos/neg, sentence1/sentence2, ...) and an optional `instruction` column (that row's query
instruction; empty or missing: the recipe's). Test splits are refused: we never train on them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from ..errors import Decoder2VecError
from . import registry
from .corpora import is_local_file, load_table, row_location
from .libreoffice import libreoffice_pairs
from .pair import Pair
from .sources import stsb_pairs

QUERY_COLUMNS = ("query", "anchor", "sentence1", "question", "text1", "premise", "source")
POSITIVE_COLUMNS = ("positive", "pos", "sentence2", "answer", "text2", "hypothesis", "target", "document")
NEGATIVE_COLUMNS = ("negative", "neg", "hard_negative", "negatives")
INSTRUCTION_COLUMN = "instruction"  # optional: a per-row query instruction

log = logging.getLogger(__name__)

__all__ = ["Pair", "load_pairs", "packaged_pairs", "stsb_pairs", "libreoffice_pairs"]


def packaged_pairs() -> dict[str, Callable[..., list[Pair]]]:
    """Every packaged pair-set name -> its loader."""
    return registry.PAIRS


def _column(columns: list[str], names: tuple[str, ...], what: str, source: str, required: bool = True):
    for name in names:
        if name in columns:
            return name
    if required:
        raise Decoder2VecError(
            f"{source} has no {what} column (looked for {', '.join(names)}; columns: {', '.join(columns)})"
        )
    return None


def load_pairs(
    source: str, *, min_score: float = 4.0, negative_max_score: float | None = None, limit: int | None = None
) -> list[Pair]:
    """Pairs of one source; at most `limit`."""
    registry.refuse_evaluation_only(source)
    options = {"min_score": min_score, "negative_max_score": negative_max_score}
    prefix = next((p for p in registry.PAIR_PREFIXES if source.startswith(p)), None)
    if source in registry.PAIRS:
        pairs = registry.PAIRS[source](**options)
    elif prefix is not None:
        pairs = registry.PAIR_PREFIXES[prefix](source[len(prefix):], **options)
    else:
        table = load_table(source)
        cols = table.column_names
        q = _column(cols, QUERY_COLUMNS, "query", source)
        p = _column(cols, POSITIVE_COLUMNS, "positive", source)
        n = _column(cols, NEGATIVE_COLUMNS, "negative", source, required=False)
        i = INSTRUCTION_COLUMN if INSTRUCTION_COLUMN in cols else None
        pairs, empty = [], []
        for number, row in enumerate(table):
            if not row[q] or not row[p]:
                empty.append(number)
                continue
            negatives = row[n] if n else []
            negatives = [negatives] if isinstance(negatives, str) else list(negatives or [])
            instruction = str(row[i]) if i and row[i] is not None and str(row[i]).strip() else ""
            pairs.append(Pair(str(row[q]), str(row[p]), [str(x) for x in negatives if x], source,
                              instruction or None))
        if empty and is_local_file(source):  # a user's own file: a row missing half its pair is a mistake
            row = table[empty[0]]
            column = q if not row[q] else p
            raise Decoder2VecError(f"{row_location(Path(source).expanduser(), empty[0], len(table))}: no {column!r} "
                                   "value; every pair needs a query and a positive (fix or remove the row)")
        if empty:  # a hub dataset's: dropped, but never silently
            log.warning("%s: skipped %d row(s) with an empty %s or %s (first: row %d, counted from 1)",
                        source, len(empty), q, p, empty[0] + 1)
    return pairs[:limit] if limit else pairs
