"""Output precisions of vectors, with sentence-transformers' conventions so stored vectors
interoperate: `quantize_embeddings` here equals `sentence_transformers.quantize_embeddings` given
the same ranges (floor, not round; binary = packed signs, minus 128 for "binary").

int8/uint8 map each dimension's [min, max] onto 256 steps. The ranges come from a calibration set
(`calibration_ranges(vectors)`), never from the batch being quantised: otherwise a vector's bytes
would depend on which other texts came with it, and a single text would have no range at all.
"""

from __future__ import annotations

import numpy as np

from ..errors import Decoder2VecError, choices_error

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
CALIBRATED = ("int8", "uint8")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise choices_error("precision", precision, PRECISIONS)
    return precision


def calibration_ranges(calibration_embeddings) -> np.ndarray:
    """(2, dim) per-dimension [min; max] of a calibration set of float vectors."""
    vectors = np.asarray(calibration_embeddings, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) < 2:
        raise Decoder2VecError(f"calibration_embeddings must be a (texts, dim) array of at least 2 vectors, got "
                               f"shape {vectors.shape}")
    return np.vstack([vectors.min(axis=0), vectors.max(axis=0)])


def check_ranges(ranges, dim: int) -> np.ndarray:
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, dim) or not np.isfinite(ranges).all():
        raise Decoder2VecError(f"precision ranges must be a finite (2, {dim}) array [min; max], got shape "
                               f"{ranges.shape}")
    return ranges


def quantize_embeddings(embeddings: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """Float32 vectors (n, dim) -> `precision`. int8/uint8 need `ranges` (2, dim)."""
    check_precision(precision)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if precision == "float32":
        return embeddings
    if precision in ("binary", "ubinary"):
        packed = np.packbits(embeddings > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    if ranges is None:
        raise Decoder2VecError(
            f"precision={precision!r} needs calibrated ranges: pass calibration_embeddings= (float vectors of a "
            "representative set) or call encoder.calibrate(texts) once (saved with the Encoder)")
    ranges = check_ranges(ranges, embeddings.shape[-1])
    starts = ranges[0]
    steps = (ranges[1] - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    levels = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
    if precision == "uint8":
        return levels.astype(np.uint8)
    return (levels - 128).astype(np.int8)


def empty(dim: int, precision: str) -> np.ndarray:
    """A (0, width) array of the precision's dtype and width."""
    packed = precision in ("binary", "ubinary")
    width = (dim + 7) // 8 if packed else dim
    dtype = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}
    return np.zeros((0, width), dtype=dtype[precision])

