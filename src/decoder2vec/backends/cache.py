"""Where exported artifacts (ONNX graphs, OpenVINO IR) live, so an export is paid once.

An Encoder folder written by `decoder2vec export --to onnx` carries its graph in `onnx/`; any
other model gets a folder under decoder2vec's cache, keyed by what the artifact depends on: the
model's files (name, size, mtime), the Encoder config that shapes the graph (bidirectional), the
weight format and ARTIFACT_VERSION. Written to a temporary sibling and renamed into place, so a
killed export never leaves a half artifact that a later load would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

# Bump when the exported graph's inputs/outputs or the quantisation change.
ARTIFACT_VERSION = 1
# int8 artifacts only (fp32 graphs stay valid): 2 = ONNX int8 weights computed in fp32.
INT8_VERSION = 2


def artifact_key(source, *, bidirectional: bool, weights: str, engine: str) -> str:
    path = Path(source)
    files = []
    if path.is_dir():
        for file in sorted(path.iterdir()):
            if file.is_file() and (file.suffix in (".safetensors", ".json") or file.name == "tokenizer.model"):
                stat = file.stat()
                files.append((file.name, stat.st_size, stat.st_mtime_ns))
    identity = {"source": str(path.resolve()) if path.exists() else str(source), "files": files,
                "bidirectional": bidirectional, "weights": weights, "engine": engine,
                "version": INT8_VERSION if weights == "int8" else ARTIFACT_VERSION}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def artifact_dir(root: Path, key: str) -> Path:
    return Path(root) / "backends" / key


@contextlib.contextmanager
def building(target: Path):
    """Yield a temporary folder; on success it becomes `target` (unless another process won the
    race, in which case theirs is kept and ours removed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.decoder2vec-partial-{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
