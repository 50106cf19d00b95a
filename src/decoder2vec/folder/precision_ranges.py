"""The folder's calibrated int8/uint8 ranges (`Encoder.calibrate`): `precision_ranges.json`,
{"normalize_embeddings": bool, "ranges": [[min...], [max...]]}."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import Decoder2VecError

FILE = "precision_ranges.json"


def read_ranges(folder) -> dict | None:
    """{"normalize_embeddings", "ranges" (float32 array)}, or None when the folder has none (or is
    no folder); an unreadable file is a one-line error naming it."""
    path = Path(folder).expanduser() / FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {"normalize_embeddings": bool(data["normalize_embeddings"]),
                "ranges": np.asarray(data["ranges"], dtype=np.float32)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Decoder2VecError(f"{path}: unreadable precision ranges ({type(exc).__name__}: {exc})") from exc


def write_ranges(folder, ranges: dict) -> None:
    data = {"normalize_embeddings": ranges["normalize_embeddings"], "ranges": np.asarray(ranges["ranges"]).tolist()}
    (Path(folder) / FILE).write_text(json.dumps(data) + "\n", encoding="utf-8")
