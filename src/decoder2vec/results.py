"""Results files: the JSON that `evaluate` writes and `compare`, `export` and the pipeline read.

A leaf module (files only), so every layer that reads results imports it without importing the
evaluation machinery.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import write_json_atomic
from .errors import Decoder2VecError


def write_results(results: dict, path: str | os.PathLike) -> Path:
    return write_json_atomic(path, results, indent=2)


def read_results(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise Decoder2VecError(f"results file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Decoder2VecError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise Decoder2VecError(f"{path} is not a decoder2vec evaluate results file (no 'tasks')")
    return data
