"""Folders that appear only when complete: write into a temporary sibling, then one rename.

Every folder decoder2vec writes for later loading (Encoder folders, converted GGUF models,
exports) goes through `atomic_folder`, so a killed process never leaves a folder that looks
finished.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, *, overwrite: bool = True):
    """Yield an empty temporary folder beside `target`; when the block ends without an error it
    is renamed to `target` (replacing an existing one when `overwrite`, else keeping the existing
    one: another process finished the same work first). On an error `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield tmp
        if target.exists() and overwrite:
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:
            if overwrite or not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
