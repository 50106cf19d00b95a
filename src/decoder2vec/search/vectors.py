"""How each output precision is stored in the table, searched, and rescored.

LanceDB searches float (float16/32/64) columns with l2/cosine/dot and packed uint8 columns with
hamming; it cannot search an int8 column. So:

| precision       | stored column                        | searched with                      | score                      |
|-----------------|--------------------------------------|------------------------------------|----------------------------|
| float32         | float32                              | cosine                             | cosine similarity          |
| int8 / uint8    | float16 holding the integer levels   | dot with the float query scaled by | rescored (below)           |
|                 | exactly (-128..255 fit in float16)   | each dimension's step              |                            |
| binary / ubinary| packed bits as uint8 (binary + 128)  | hamming with the query's sign bits | rescored (below)           |

Rescoring is sentence-transformers' quantized search (`semantic_search_usearch`): fetch
`k * rescore_multiplier` candidates, then score each by the float query's dot product with the
candidate's stored vector brought back to float (int8/uint8 levels dequantized with the corpus's
ranges; bits unpacked to 0/1), and keep the best k. One change for int8/uint8 candidates: where
sentence-transformers searches with the query's own int8 levels, the table is searched with
q * step (step = each dimension's range / 255). The dequantized vector is min + (level + 128) * step,
so q . dequantized = constant + (q * step) . level: the candidates come in exactly the rescored
order (an exact scan needs no oversampling), where the quantized query's dot with the levels
found 37% of the float top 10 on static SmolLM2 vectors (benchmarks/search.py, first trial).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..model.precision import CALIBRATED

PACKED = ("binary", "ubinary")


def metric_of(precision: str) -> str:
    if precision in PACKED:
        return "hamming"
    return "dot" if precision in CALIBRATED else "cosine"


def stored_type(precision: str, width: int) -> pa.DataType:
    item = pa.uint8() if precision in PACKED else pa.float16() if precision in CALIBRATED else pa.float32()
    return pa.list_(item, width)


def to_stored(embedding: pa.FixedSizeListArray, precision: str) -> pa.FixedSizeListArray:
    """A shard's `embedding` column as the table's `vector` column (values unchanged: int levels are
    exact in float16, and binary's -128 offset is undone so the bytes are the packed bits)."""
    width = embedding.type.list_size
    values = embedding.values.to_numpy(zero_copy_only=False)
    if precision == "binary":
        values = (values.astype(np.int16) + 128).astype(np.uint8)
    elif precision in CALIBRATED:
        values = values.astype(np.float16)
    return pa.FixedSizeListArray.from_arrays(pa.array(values), width)


def query_for(vector: np.ndarray, precision: str, ranges) -> np.ndarray:
    """The float query as the table's search input: itself, its int levels, or its packed sign bits."""
    if precision in PACKED:
        return np.packbits(vector > 0)
    if precision in CALIBRATED:
        return (vector * _steps(ranges)).astype(np.float32)
    return vector.astype(np.float32)


def _steps(ranges) -> np.ndarray:
    ranges = np.asarray(ranges, np.float32)
    steps = (ranges[1] - ranges[0]) / 255
    return np.where(steps == 0, 1, steps)  # quantize_embeddings' rule for a constant dimension


def rescore(query: np.ndarray, stored: np.ndarray, precision: str, ranges) -> np.ndarray:
    """The float query's dot product with each candidate's stored vector, back in float."""
    if precision in PACKED:
        values = np.unpackbits(stored.astype(np.uint8), axis=-1)[:, : len(query)].astype(np.float32)
    else:
        levels = stored.astype(np.float64) + (128 if precision == "int8" else 0)
        values = levels * _steps(ranges) + np.asarray(ranges, np.float32)[0]
    return values @ query.astype(np.float64)
