"""Pair sets for supervised contrastive training: (query, positive, hard negatives).

A source is a packaged name (`stsb-en-train`, `stsb-de-train`, `libreoffice-en-da`,
`libreoffice-en-de`), a local .jsonl/.csv/.parquet file, or a hub dataset id ("name[:config[:split]]")
with query/positive(/negative) columns under any of the usual names (anchor/positive/negative,
query/pos/neg, sentence1/sentence2, ...) and an optional `instruction` column (that row's query
instruction; empty or missing: the recipe's). Test splits are refused: we never train on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Decoder2VecError
from .corpora import load_table

QUERY_COLUMNS = ("query", "anchor", "sentence1", "question", "text1", "premise", "source")
POSITIVE_COLUMNS = ("positive", "pos", "sentence2", "answer", "text2", "hypothesis", "target", "document")
NEGATIVE_COLUMNS = ("negative", "neg", "hard_negative", "negatives")
INSTRUCTION_COLUMN = "instruction"  # optional: a per-row query instruction


@dataclass
class Pair:
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    task: str = ""  # the source it came from; batches can be drawn from one task at a time
    # This row's query instruction (E5-style per-dataset instructions); None: the recipe's own.
    instruction: str | None = None


def stsb_pairs(lang: str, *, min_score: float = 4.0, negative_max_score: float | None = None) -> list[Pair]:
    """STS-B train pairs scoring >= min_score as positives (both directions, it is symmetric).
    With negative_max_score, a sentence's low-scoring partners (<= that score) become its hard
    negatives."""
    from .sources import stsb

    rows = stsb(lang, "train")
    low: dict[str, list[str]] = {}
    if negative_max_score is not None:
        for a, b, score in rows:
            if score <= negative_max_score:
                low.setdefault(a, []).append(b)
                low.setdefault(b, []).append(a)
    task = f"stsb-{lang}-train"
    pairs = []
    for a, b, score in rows:
        if score >= min_score and a != b:
            pairs.append(Pair(a, b, low.get(a, [])[:1], task))
            pairs.append(Pair(b, a, low.get(b, [])[:1], task))
    return pairs


def libreoffice_pairs(lang: str, *, min_words: int = 4) -> list[Pair]:
    """English help paragraph -> its translation: aligned by page key and paragraph id."""
    from .sources import libreoffice_help

    english, other = libreoffice_help("en"), libreoffice_help(lang)
    pairs, seen = [], set()
    for key, page in english.items():
        if key not in other:
            continue
        translated = dict(zip(other[key]["paragraph_ids"], other[key]["paragraphs"]))
        for pid, text in zip(page["paragraph_ids"], page["paragraphs"]):
            target = translated.get(pid)
            if not target or len(text.split()) < min_words or text == target or (text, target) in seen:
                continue
            seen.add((text, target))
            pairs.append(Pair(text, target, [], f"libreoffice-en-{lang}"))
    return pairs


PACKAGED_PAIRS = {
    "stsb-en-train": lambda **kw: stsb_pairs("en", **kw),
    "stsb-de-train": lambda **kw: stsb_pairs("de", **kw),
    "libreoffice-en-da": lambda **kw: libreoffice_pairs("da"),
    "libreoffice-en-de": lambda **kw: libreoffice_pairs("de"),
}


def packaged_pairs() -> dict:
    """Every packaged pair set: the ones above plus those the language module registers."""
    from ..languages import register_sources

    register_sources()
    return PACKAGED_PAIRS


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
    packaged = packaged_pairs()
    if source in packaged:
        pairs = packaged[source](min_score=min_score, negative_max_score=negative_max_score)
    else:
        table = load_table(source)
        cols = table.column_names
        q = _column(cols, QUERY_COLUMNS, "query", source)
        p = _column(cols, POSITIVE_COLUMNS, "positive", source)
        n = _column(cols, NEGATIVE_COLUMNS, "negative", source, required=False)
        i = INSTRUCTION_COLUMN if INSTRUCTION_COLUMN in cols else None
        pairs = []
        for row in table:
            if not row[q] or not row[p]:
                continue
            negatives = row[n] if n else []
            negatives = [negatives] if isinstance(negatives, str) else list(negatives or [])
            instruction = str(row[i]) if i and row[i] is not None and str(row[i]).strip() else ""
            pairs.append(Pair(str(row[q]), str(row[p]), [str(x) for x in negatives if x], source,
                              instruction or None))
    return pairs[:limit] if limit else pairs
