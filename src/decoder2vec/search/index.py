"""`Index`: a built index opened for queries, and `search(encoder, index, query)`.

A query is encoded by the Encoder that encoded the corpus (refused otherwise), with the index's
query instruction and the corpus's encode options (normalisation, truncate_dim), then searched in
the table: cosine for float32 vectors, quantized search with rescoring for int8 and binary ones
(search/vectors.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import lancedb
import numpy as np

from ..errors import Decoder2VecError
from ..model.precision import CALIBRATED
from .build import corrupted
from .record import TABLE, check_encoder, read_record
from .vectors import metric_of, query_for, rescore


@dataclass
class Hit:
    id: object
    score: float
    text: str
    columns: dict = field(default_factory=dict)  # carried columns of the corpus encode

    def to_dict(self) -> dict:
        return {"id": self.id, "score": self.score, "text": self.text, **self.columns}


class Index:
    """A finished index folder (`build_index` / `decoder2vec index`), opened for search."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.record = read_record(self.path)
        if not self.record["complete"]:
            raise Decoder2VecError(f"{self.path}: the index build has not finished ({self.record['rows']} rows "
                                   "added); run the same `decoder2vec index` command to finish it")
        try:
            self.table = lancedb.connect(self.path).open_table(self.record.get("table", TABLE))
            rows = self.table.count_rows()
        except Exception as exc:
            raise corrupted(self.path, exc) from None
        if rows != self.record["rows"]:
            raise Decoder2VecError(f"{self.path}: the table has {rows} rows, the record {self.record['rows']}; "
                                   "rebuild the index into a new folder")
        self.precision = self.record["options"].get("precision") or "float32"
        self.ranges = self.record.get("calibration")
        self.columns = [name for name in self.table.schema.names if name not in ("id", "text", "vector")]

    def __len__(self) -> int:
        return self.record["rows"]

    @property
    def query_instruction(self) -> str | None:
        return self.record["query_instruction"]

    def check_encoder(self, encoder) -> None:
        """Refuse another Encoder; for an int8/uint8 corpus quantised with the Encoder's own calibrated
        ranges (`Encoder.calibrate`: the manifest records none then), take them from it."""
        check_encoder(self.record, encoder, self.path)
        saved = getattr(encoder, "precision_ranges", None)
        if self.precision in CALIBRATED and self.ranges is None and saved is not None:
            width = self.record["dimension"]
            self.ranges = np.asarray(saved["ranges"], np.float32)[:, :width]

    def encode_queries(self, encoder, queries: list[str]) -> np.ndarray:
        """The float query vectors, encoded as the index's corpus was (its options, the query instruction)."""
        self.check_encoder(encoder)
        options = self.record["options"]
        return encoder.encode(queries, instruction=self.query_instruction, precision="float32",
                              normalize_embeddings=bool(options.get("normalize_embeddings")),
                              truncate_dim=options.get("truncate_dim"), show_progress_bar=False)

    def search(self, encoder, query: str | list[str], *, k: int = 10, nprobes: int | None = None,
               rescore_multiplier: int = 4):
        """The k nearest texts of `query` (a list of Hits, best first); a list of queries gives one
        list per query."""
        single = isinstance(query, str)
        queries = check_queries(query)
        check_k(k)
        vectors = self.encode_queries(encoder, queries)
        hits = [self.search_vector(v, k=k, nprobes=nprobes, rescore_multiplier=rescore_multiplier) for v in vectors]
        return hits[0] if single else hits

    def search_vector(self, vector: np.ndarray, *, k: int = 10, nprobes: int | None = None,
                      rescore_multiplier: int = 4, exact: bool = False) -> list[Hit]:
        """The k nearest rows to a float query vector. exact=True scans every row, index or not."""
        check_k(k)
        if isinstance(rescore_multiplier, bool) or not isinstance(rescore_multiplier, int) or rescore_multiplier < 1:
            raise Decoder2VecError(f"rescore_multiplier must be an integer >= 1, got {rescore_multiplier!r}")
        vector = np.asarray(vector, np.float32)
        if self.precision in CALIBRATED and self.ranges is None:
            raise Decoder2VecError(f"{self.path} holds {self.precision} vectors quantised with the Encoder's own "
                                   "ranges; search with Index.search(encoder, ...) (or call check_encoder(encoder) first)")
        quantized = self.precision != "float32"
        limit = k * rescore_multiplier if quantized else k
        query = (self.table.search(query_for(vector, self.precision, self.ranges), vector_column_name="vector")
                 .metric(metric_of(self.precision)).limit(limit))
        if nprobes is not None:
            query = query.nprobes(nprobes)
        if exact:
            query = query.bypass_vector_index()
        try:
            found = query.to_arrow()
        except Exception as exc:
            raise corrupted(self.path, exc) from None
        if quantized:
            stored = np.stack(found["vector"].to_numpy(zero_copy_only=False)) if found.num_rows else \
                np.zeros((0, 1), np.float32)
            scores = rescore(vector, stored, self.precision, self.ranges) if found.num_rows else np.zeros(0)
            order = np.argsort(-scores, kind="stable")[:k]
        else:
            scores = 1.0 - found["_distance"].to_numpy(zero_copy_only=False).astype(np.float64)
            order = np.arange(found.num_rows)[:k]
        ids, texts = found["id"].to_pylist(), found["text"].to_pylist()
        extra = {name: found[name].to_pylist() for name in self.columns}
        return [Hit(ids[i], float(scores[i]), texts[i], {name: values[i] for name, values in extra.items()})
                for i in order]


def search(encoder, index: str | os.PathLike | Index, query: str | list[str], *, k: int = 10,
           nprobes: int | None = None, rescore_multiplier: int = 4):
    """Search an index folder with the Encoder that encoded its corpus: `search(encoder, "db/", "a query")`."""
    index = index if isinstance(index, Index) else Index(index)
    return index.search(encoder, query, k=k, nprobes=nprobes, rescore_multiplier=rescore_multiplier)


def check_queries(query) -> list[str]:
    queries = [query] if isinstance(query, str) else query
    if not isinstance(queries, list) or not queries:
        raise Decoder2VecError(f"the query must be a string or a non-empty list of strings, got {query!r:.80}")
    for i, text in enumerate(queries):
        if not isinstance(text, str):
            raise Decoder2VecError(f"query[{i}] is {type(text).__name__}, not a string")
        if not text.strip():
            where = "the query" if len(queries) == 1 else f"query[{i}]"
            raise Decoder2VecError(f"{where} is empty (whitespace only counts as empty): nothing to search for")
    return queries


def check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise Decoder2VecError(f"k must be an integer >= 1 (how many results), got {k!r}")


__all__ = ["Hit", "Index", "search"]
