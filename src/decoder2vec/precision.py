"""Output precisions, with sentence-transformers' conventions so stored vectors interoperate."""

from __future__ import annotations

import numpy as np

from .errors import choices_error

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise choices_error("precision", precision, PRECISIONS)
    return precision


def quantize(embeddings: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """Quantise float32 vectors. int8/uint8 map each dimension's [min, max] onto 256 steps;
    the range comes from `ranges` (2, dim) or, if None, from these embeddings themselves."""
    check_precision(precision)
    if precision == "float32":
        return embeddings.astype(np.float32, copy=False)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(embeddings > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    if ranges is None:
        if len(embeddings) == 0:
            return embeddings.astype(np.int8 if precision == "int8" else np.uint8)
        ranges = np.vstack([embeddings.min(axis=0), embeddings.max(axis=0)])
    starts = ranges[0]
    steps = (ranges[1] - ranges[0]) / 255
    steps = np.where(steps == 0, 1, steps)
    levels = np.clip(np.round((embeddings - starts) / steps), 0, 255)
    if precision == "uint8":
        return levels.astype(np.uint8)
    return (levels - 128).astype(np.int8)
