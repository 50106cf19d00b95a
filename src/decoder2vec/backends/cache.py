"""Where exported artifacts (ONNX graphs, OpenVINO IR) live, so an export is paid once.

An Encoder folder written by `decoder2vec export --to onnx` carries its graph in `onnx/`; any
other model gets a folder under decoder2vec's cache, keyed by what the artifact depends on: the
model's files (name, size, mtime), the Encoder config that shapes the graph (bidirectional), the
weight format and ARTIFACT_VERSION. Written to a temporary sibling and renamed into place, so a
killed export never leaves a half artifact that a later load would trust.

Each artifact folder records the size and sha256 of every file it was built with (artifact.json);
a load checks them, so a file truncated or emptied later (a full disk, a user's copy, a crash of
another tool) is exported again rather than failing every load after it (issue 23, case 14).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..atomic import CACHE_ENV, follow_umask
from ..errors import Decoder2VecError

log = logging.getLogger(__name__)

# Bump when the exported graph's inputs/outputs or the quantisation change.
ARTIFACT_VERSION = 1
# int8 artifacts only (fp32 graphs stay valid): 2 = ONNX int8 weights computed in fp32.
INT8_VERSION = 2
RECORD = "artifact.json"  # name -> {size, sha256} of the files an artifact folder was built with


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_artifact(folder: Path) -> None:
    """Write folder/artifact.json: the size and sha256 of every file now in `folder`."""
    folder = Path(folder)
    files = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != RECORD}
    (folder / RECORD).write_text(json.dumps(files, indent=1) + "\n", encoding="utf-8")


def artifact_problem(folder: Path) -> str | None:
    """What is wrong with the artifact folder `folder` (missing, unrecorded, a file missing, of
    another size or another sha256), None when every recorded file is as it was written."""
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    try:
        files = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        recorded = {name: (int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"no readable {RECORD} (written by an older decoder2vec, or its export was interrupted)"
    for name, (size, digest) in recorded.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} is {path.stat().st_size} bytes, {size} when it was written (truncated?)"
        if _sha256(path) != digest:
            return f"{name} has changed since it was written (sha256 differs)"
    return None


def needs_building(folder: Path) -> bool:
    """True when the cached artifact `folder` must be (re)built; says why when one was there."""
    problem = artifact_problem(folder)
    if problem is not None and problem != "missing":
        log.warning("the cached export in %s is broken: %s; exporting it again", folder, problem)
    return problem is not None


def check_own_artifact(folder: Path) -> None:
    """A folder's own export (`decoder2vec export --to onnx` writes onnx/ with its record): a
    one-line error when a recorded file changed since, for decoder2vec never rewrites a user's
    folder. Exports from before the record are used as they are."""
    if not (Path(folder) / RECORD).is_file():
        return
    problem = artifact_problem(folder)
    if problem is not None:
        raise Decoder2VecError(f"the exported model in {folder} is broken: {problem}; export it again "
                               "(decoder2vec export --to onnx --overwrite), or delete that folder to export into "
                               "the cache instead")


@contextlib.contextmanager
def building(target: Path):
    """Yield a temporary folder; on success its files are recorded (artifact.json), given the
    umask's permissions, and it becomes `target`: it replaces a broken `target`, while a sound one
    (another process won the race) is kept and ours removed."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.decoder2vec-partial-{os.getpid()}-", dir=target.parent))
    except OSError as exc:
        raise Decoder2VecError(f"cannot write the exported model into {target.parent}: {exc.strerror or exc}; set "
                               f"{CACHE_ENV} to a writable folder") from None
    try:
        yield tmp
        record_artifact(tmp)
        follow_umask(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            if artifact_problem(target) is not None:  # broken: ours replaces it
                aside = target.parent / f".{target.name}.decoder2vec-broken-{os.getpid()}"
                os.rename(target, aside)
                os.rename(tmp, target)
                shutil.rmtree(aside, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
