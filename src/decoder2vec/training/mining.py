"""Hard-negative mining with false-negative filtering: (query, positive) pairs -> (query, positive,
negatives), written as a pair file the supervised stage reads.

The ranking and filters are sentence-transformers' `util.mine_hard_negatives` (v6): candidates are
the pairs' positives plus an optional corpus, ranked by cosine to the query; the query's own
positives are never negatives; a candidate scoring within `absolute_margin` of the (lowest)
positive, or above `positive - |positive| * relative_margin`, is a likely false negative and is
dropped (NV-Retriever's TopK-PercPos: relative_margin=0.05), as are ones above `max_score` or
below `min_score`; of the rest, ranks range_min..range_max are kept and `num_negatives` taken from
the top or at random.

It is re-implemented here on Encoder vectors rather than called, because (1) a pair may carry its
own query instruction, which the Encoder attends to but never pools, while sentence-transformers
takes one prompt string for all queries and pools it with the text, so its vectors would not be
the ones the supervised stage trains; (2) its output regroups and drops rows (one row per
negative, or only queries with enough negatives), where a pair file must keep every pair with its
instruction and task; (3) it needs a SentenceTransformer, i.e. a second load of the model through
the export. Any embedding model can mine: a decoder2vec Encoder (anything Encoder.from_pretrained
loads) or a sentence-transformers model (the packaged `minilm` or a local folder; fast, and a
different model than the one being trained, as sentence-transformers users mine). The rules above are kept to the letter (same defaults for range_max, same margin
formulas, same tie to the hardest positive), so its documentation applies.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import write_atomic
from ..data.pairs import INSTRUCTION_COLUMN, Pair
from ..encoder import Encoder
from ..errors import Decoder2VecError
from ..folder.config import is_sentence_transformers
from .teacher import encode_with_teacher

SAMPLING_STRATEGIES = ("top", "random")
# Queries scored against the whole candidate pool at once: bounds the score matrix's memory.
QUERY_CHUNK = 1024


def _check(pairs, range_min, range_max, num_negatives, sampling_strategy) -> None:
    if not pairs:
        raise Decoder2VecError("mine_hard_negatives got no pairs")
    if num_negatives < 1:
        raise Decoder2VecError(f"num_negatives must be >= 1, got {num_negatives}")
    if range_min < 0:
        raise Decoder2VecError(f"range_min must be >= 0, got {range_min}")
    if range_max is not None and num_negatives > range_max - range_min:
        raise Decoder2VecError(f"range_min={range_min}..range_max={range_max} leaves {range_max - range_min} "
                               f"candidates, fewer than num_negatives={num_negatives}")
    if sampling_strategy not in SAMPLING_STRATEGIES:
        raise Decoder2VecError(f"sampling_strategy must be one of {', '.join(SAMPLING_STRATEGIES)}, "
                               f"got {sampling_strategy!r}")


def mine_hard_negatives(
    pairs: Sequence[Pair],
    model: Encoder | str | os.PathLike | None,
    *,
    range_min: int = 0,
    range_max: int | None = None,
    num_negatives: int = 3,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    sampling_strategy: str = "top",
    corpus: Sequence[str] | None = None,
    query_instruction: str | None = None,
    document_instruction: str | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> list[Pair]:
    """Every pair again, in order, with mined hard negatives added after the ones it had.

    model: an Encoder, anything `Encoder.from_pretrained` loads, or a sentence-transformers model
    (`minilm`: the packaged all-MiniLM-L6-v2, or a local sentence-transformers folder; a hub id
    is loaded as an Encoder; None: the default Encoder model). Queries are encoded with their
    pair's instruction, else `query_instruction`; candidates with `document_instruction` (the
    supervised stage's keys of the same names). Pairs sharing a query (and instruction) share
    their positives: none of them is a negative for that query, and the margins are measured from
    the lowest-scoring one. range_max None: range_min + num_negatives + most positives of a query,
    times 10 for the negatives when a margin or max_score may drop candidates (as
    sentence-transformers). A query may get fewer than num_negatives (a warning counts them);
    no pair is dropped.
    """
    pairs = list(pairs)
    _check(pairs, range_min, range_max, num_negatives, sampling_strategy)
    encoder = _embedder(model)
    groups: dict[tuple[str, str | None], list[int]] = {}  # (query, instruction) -> rows
    for row, pair in enumerate(pairs):
        groups.setdefault((pair.query, pair.instruction or query_instruction), []).append(row)
    documents = list(dict.fromkeys([p.positive for p in pairs] + list(corpus or [])))
    index = {text: i for i, text in enumerate(documents)}
    positives = [sorted({index[pairs[r].positive] for r in rows}) for rows in groups.values()]
    most_positives = max(len(p) for p in positives)
    if range_max is None:
        filters = absolute_margin is not None or relative_margin is not None or max_score is not None
        range_max = range_min + num_negatives * (10 if filters else 1) + most_positives

    queries = [q for q, _ in groups]
    instructions = [i for _, i in groups]
    query_vectors = encoder.encode(queries, instruction=instructions, batch_size=batch_size,
                                   normalize_embeddings=True)
    document_vectors = encoder.encode(documents, instruction=document_instruction, batch_size=batch_size,
                                      normalize_embeddings=True)
    rng = random.Random(seed)
    mined: list[list[int]] = []
    k = min(range_max + most_positives, len(documents))
    for start in range(0, len(queries), QUERY_CHUNK):
        scores = query_vectors[start:start + QUERY_CHUNK] @ document_vectors.T
        for offset, row in enumerate(scores):
            own = positives[start + offset]
            mined.append(_negatives(row, own, k, range_min, range_max, num_negatives, absolute_margin,
                                    relative_margin, max_score, min_score, sampling_strategy, rng))

    out, short = [], []
    for rows, chosen in zip(groups.values(), mined):
        if len(chosen) < num_negatives:
            short.append(rows[0])
        for r in rows:
            pair = pairs[r]
            extra = [documents[i] for i in chosen if documents[i] not in pair.negatives]
            out.append((r, Pair(pair.query, pair.positive, [*pair.negatives, *extra], pair.task, pair.instruction)))
    if short:
        warnings.warn(f"{len(short)} of {len(groups)} queries got fewer than num_negatives={num_negatives} negatives "
                      f"(first: pair {min(short)}); widen range_max or loosen the margins for more", stacklevel=2)
    return [pair for _, pair in sorted(out, key=lambda item: item[0])]


class _SentenceTransformerEmbedder:
    """A sentence-transformers model behind the one call mining makes (Encoder.encode's keywords)."""

    def __init__(self, name: str):
        self.name = name

    def encode(self, texts, *, instruction=None, batch_size=32, normalize_embeddings=True):
        given = instruction if isinstance(instruction, (list, tuple)) else [instruction]
        if any(given):
            raise Decoder2VecError(f"mining with the sentence-transformers model {self.name!r} takes no instruction "
                                   "(query/document instructions need a decoder2vec Encoder as --model)")
        return encode_with_teacher(self.name, list(texts), batch_size=batch_size)


def _embedder(model):
    """What encodes for mining: an Encoder, or a sentence-transformers model as the distill teacher."""
    if isinstance(model, Encoder) or model is None:
        return model if model is not None else Encoder.from_pretrained(None)
    name = str(model)
    # Only an anchor or a sentence-transformers folder (folder.kind; a saved Encoder folder carries
    # modules.json too, and stays an Encoder): a hub id stays an Encoder (the decoders this library
    # converts), as `--model` means everywhere else.
    if is_sentence_transformers(name):
        return _SentenceTransformerEmbedder(name)
    return Encoder.from_pretrained(name)


def relative_margin_limit(positive, relative_margin: float):
    """The score above which a candidate is a likely false negative (NV-Retriever's TopK-PercPos,
    sentence-transformers' relative_margin): `positive - |positive| * relative_margin`. `positive`
    is a float or an array of them; mine_hard_negatives and the distill stage both use it."""
    return positive - abs(positive) * relative_margin


def _negatives(row, own, k, range_min, range_max, num_negatives, absolute_margin, relative_margin,
               max_score, min_score, sampling_strategy, rng) -> list[int]:
    """Candidate document indices for one query, hardest first (sentence-transformers' rules)."""
    # The k best without sorting the whole pool (argpartition), then ordered by score, ties by index.
    top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
    top = top[np.lexsort((top, -row[top]))]
    scores = row[top].astype(np.float64)
    scores[np.isin(top, own)] = -np.inf
    hardest_positive = float(row[own].min())
    if absolute_margin is not None:
        scores[scores + absolute_margin > hardest_positive] = -np.inf
    if relative_margin is not None:
        scores[scores > relative_margin_limit(hardest_positive, relative_margin)] = -np.inf
    if max_score is not None:
        scores[scores > max_score] = -np.inf
    if min_score is not None:
        scores[scores < min_score] = -np.inf
    ranked = np.argsort(-scores, kind="stable")[:range_max][range_min:]
    ranked = [int(i) for i in ranked if np.isfinite(scores[i])]
    if sampling_strategy == "random" and len(ranked) > num_negatives:
        ranked = sorted(rng.sample(ranked, num_negatives))  # positions in `ranked` order: hardest first
    return [int(top[i]) for i in ranked[:num_negatives]]


def check_pair_file(output: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """A one-line error unless `output` is a .jsonl path that is new (or overwrite=True)."""
    output = Path(output)
    if output.suffix.lower() != ".jsonl":
        raise Decoder2VecError(f"the mined pair file must end in .jsonl, got {str(output)!r}")
    if output.is_dir():
        raise Decoder2VecError(f"{str(output)!r} is a folder; name a .jsonl file")
    if output.exists() and not overwrite:
        raise Decoder2VecError(f"{str(output)!r} exists; choose a new file or pass overwrite=True (--overwrite)")
    return output


def write_pair_file(pairs: Sequence[Pair], output: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write pairs as JSONL (query, positive, negative: [...], and instruction when any pair has
    one), the local pair-file format `data.pairs.load_pairs` and the supervised stage read. An
    existing file is refused unless overwrite=True; the file appears only when complete."""
    output = check_pair_file(output, overwrite=overwrite)
    with_instruction = any(p.instruction for p in pairs)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for p in pairs:
                row = {"query": p.query, "positive": p.positive, "negative": list(p.negatives)}
                if with_instruction:
                    row[INSTRUCTION_COLUMN] = p.instruction
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return write_atomic(output, write)
