"""One-file outputs (.npy, .parquet) never cost a user a file.

An existing file is refused unless overwrite=True (`--overwrite`), and even then it is replaced
only when decoder2vec wrote it and it is unchanged since: beside each file it writes, decoder2vec
records the file's (and its `.ids.json`'s) SHA-256 in a hidden `.NAME.decoder2vec-output.json`.
A file without that record, or changed since, was not written by decoder2vec (or not in this
form), and is left alone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import Decoder2VecError

KIND = "embeddings file"


def record_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.decoder2vec-output.json")


def check_output_file(path: Path, companions: list[Path], *, overwrite: bool) -> None:
    """Refuse, before any model load, to write `path` (and its `companions`, e.g. the ids file)
    where that would replace a file decoder2vec did not write, or any file without overwrite."""
    existing = [p for p in (path, *companions) if p.exists() or p.is_symlink()]
    if not existing:
        return
    for p in existing:
        if p.is_dir():
            raise Decoder2VecError(f"{str(p)!r} is a folder; choose another output file")
    ours = _recorded(path)
    for p in existing:
        if ours.get(p.name) != _sha256(p):
            raise Decoder2VecError(
                f"{str(p)!r} exists and was not written by decoder2vec (or changed since); decoder2vec never "
                "replaces such a file: choose another output file, or move it away yourself")
    if not overwrite:
        raise Decoder2VecError(f"{str(existing[0])!r} exists (an earlier decoder2vec output); pass --overwrite "
                               "(overwrite=True) to replace it, or choose another output file")


def record_output_file(path: Path, companions: list[Path]) -> None:
    """Record the files just written, so a later --overwrite may replace them."""
    files = {p.name: _sha256(p) for p in (path, *companions) if p.is_file()}
    record_path(path).write_text(json.dumps({"kind": KIND, "files": files}, indent=1) + "\n", encoding="utf-8")


def _recorded(path: Path) -> dict:
    try:
        record = json.loads(record_path(path).read_text(encoding="utf-8"))
        return dict(record["files"]) if record.get("kind") == KIND else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None
