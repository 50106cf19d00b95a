"""What model wrote an output, by content: a hash of the model folder's files.

A corpus manifest records the model's path, and a folder replaced at the same path (a retrained
model saved over the old one) would resume into the same output: old rows from one model, new
rows from another. So the manifest also records this fingerprint, and a resume with other files
is refused. It hashes contents, not times or paths: a copied or moved folder is the same model.

The files hashed are those that decide the vectors: the folder's top-level files (weights,
config, tokenizer, decoder2vec's own config and layers) and sentence-transformers module folders
(`1_Pooling/`, ...); not hidden files, the model card, or exports and caches kept beside them.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
from huggingface_hub import snapshot_download

from ..errors import Decoder2VecError
from ..model.loading import resolve_model

SKIPPED = {"README.md"}
MODULE_FOLDER = re.compile(r"^\d+_")
_digests: dict[tuple, str] = {}  # a file's digest, by what its stat says (one hash per process)


def model_fingerprint(model) -> str | None:
    """"sha256:<16 hex>" of the model's files: a model folder, a .gguf file or packaged name (their
    converted folder), or a hub id found in the Hugging Face cache; None when there is nothing local
    to hash (a hub id not downloaded yet)."""
    if model is None:
        return None
    folder = _local_folder(str(model))
    if folder is None:
        return None
    digest = hashlib.sha256()
    for path in _model_files(folder):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + _file_digest(path).encode() + b"\0")
    return "sha256:" + digest.hexdigest()[:16]


def _local_folder(model: str) -> Path | None:
    source = Path(resolve_model(model))
    if source.is_dir():
        return source
    try:  # a hub id: the snapshot in the Hugging Face cache, if it was downloaded
        return Path(snapshot_download(str(model), local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, offline, or not a hub id: nothing local to hash
        return None


def _model_files(folder: Path) -> list[Path]:
    files = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name in SKIPPED:
            continue
        if entry.is_file():
            files.append(entry)
        elif entry.is_dir() and MODULE_FOLDER.match(entry.name):
            files.extend(p for p in sorted(entry.rglob("*")) if p.is_file() and not p.name.startswith("."))
    return files


def _file_digest(path: Path) -> str:
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if key not in _digests:
            with open(path, "rb") as f:
                _digests[key] = hashlib.file_digest(f, "sha256").hexdigest()
        return _digests[key]
    except OSError as exc:
        raise Decoder2VecError(f"cannot read model file {path}: {exc.strerror or exc}") from None


def fingerprint_of_encoder(encoder, model=None) -> str | None:
    """The fingerprint of what `encoder` was loaded from: `model` (the name the user gave), else the
    folder it was loaded from, else its weights in memory (an Encoder built or trained in Python),
    else None (an exported backend built in memory)."""
    if model is not None:
        return model_fingerprint(model)
    path = getattr(encoder, "path", None)
    if path is not None and os.path.isdir(path):
        return model_fingerprint(path)
    modules = {"model": getattr(encoder, "model", None), "latent_attention": getattr(encoder, "latent_attention", None)}
    modules = {k: m for k, m in modules.items() if isinstance(m, torch.nn.Module)}
    if "model" not in modules:
        return None
    digest = hashlib.sha256()
    tensors = {f"{k}.{name}": t for k, m in modules.items() for name, t in m.state_dict().items()}
    for name, tensor in sorted(tensors.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return "weights-sha256:" + digest.hexdigest()[:16]
