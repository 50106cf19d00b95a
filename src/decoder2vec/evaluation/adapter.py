"""The runner's one way to get vectors from any model: checked, and cached on disk.

`CachingAdapter` is not an Encoder. An `Encoder` (decoder2vec.encoder) is the product: it turns
texts into vectors. The adapter is what the evaluation runner puts around whatever model it is
given (a decoder2vec Encoder, a sentence-transformers model, anything with `encode`): one
`embed(texts, instruction)` call for all of them, output checks that name the task, a per-call
token limit for long inputs, and a disk cache per (model identity, instruction, texts), so a second
run of the same model on the same suite encodes nothing. Tasks never see it (tasks.py).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from ..folder.anchors import MTEB_TASK_TYPES, PromptedSentenceTransformer
from ..atomic import cache_dir, write_npy_atomic
from ..errors import Decoder2VecError
from .label import model_label
from .settings import encoder_settings


class CachingAdapter:
    """Wraps a model: uniform `embed(texts, instruction)`, output checks, disk cache.

    use_instructions: pass task instructions to the model. Default: always for decoder2vec
    encoders; for sentence-transformers models only when the model defines prompts (MTEB does
    the same: models not trained with instructions get none).
    """

    def __init__(self, encoder, *, batch_size: int = 32, cache: bool = True, name: str | None = None,
                 use_instructions: bool | None = None, show_progress_bar: bool = False):
        if isinstance(encoder, CachingAdapter):
            encoder = encoder.encoder
        if isinstance(encoder, SentenceTransformer) and use_instructions is None:
            # Its own prompts table, chosen by side and task type as MTEB does (no table: no prompt).
            encoder = PromptedSentenceTransformer(encoder, name or model_label(encoder))
        if not callable(getattr(encoder, "encode", None)):
            raise Decoder2VecError(f"{type(encoder).__name__} has no encode() method; cannot evaluate it")
        self.encoder = encoder
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        params = inspect.signature(encoder.encode).parameters
        # instruction: a decoder2vec Encoder (the task's instruction strings); sides: folder/anchors.py's
        # interface (the model's own prompts by side and task type); prompt: any other
        # sentence-transformers-like model (the task's instruction as its prompt).
        self.style = ("instruction" if "instruction" in params else "sides" if "side" in params
                      else "prompt" if "prompt" in params else "plain")
        if use_instructions is None:
            # sentence-transformers models carry a prompts dict that is often {"query": "", "document": ""}.
            prompts = getattr(encoder, "prompts", None) or {}
            use_instructions = self.style == "instruction" or any(prompts.values())
        self.use_instructions = use_instructions and self.style != "plain"
        self.name = name or model_label(encoder)
        self.identity = model_identity(encoder, self.name, self.use_instructions) if cache else None
        self.dimension: int | None = None

    @property
    def tokenizer(self):
        """The model's tokenizer, for tasks whose texts are measured in the model's tokens; or None."""
        return getattr(self.encoder, "tokenizer", None)

    def embed(self, texts: list[str], instruction: str | None = None, *, task: str = "?",
              max_length: int | None = None, batch_size: int | None = None, side: str = "query",
              task_type: str | None = None) -> np.ndarray:
        """Vectors (len(texts), dim) as float32; raises naming `task` when the model misbehaves.

        max_length: tokens these texts need; a decoder2vec Encoder's limit is raised to it for this
        call only (never lowered). batch_size: texts per forward pass for this call (long inputs).
        side ("query" | "document") and task_type (decoder2vec's) pick the prompt of a model that
        has its own (folder/anchors.py); a decoder2vec Encoder gets `instruction` instead.
        """
        task_type = MTEB_TASK_TYPES.get(task_type, task_type)
        if self.style == "sides":
            prompt = getattr(self.encoder, "prompt_for", None)
            # The cache key is what the model is given: its resolved prompt (or the side and type).
            instruction = prompt(side, task_type) if prompt else f"<{side}|{task_type}>"
        else:
            instruction = instruction if self.use_instructions and self._reads(side, task_type) else None
        path = self._cache_path(texts, instruction, max_length)
        if path is not None and path.exists():
            vectors = np.load(path)
        else:
            with self._token_limit(max_length):
                raw = self._encode(texts, instruction, batch_size or self.batch_size, side, task_type)
            vectors = self._check(raw, len(texts), task)
            if path is not None:
                write_npy_atomic(path, vectors)
        if self.dimension is None:
            self.dimension = vectors.shape[1]
        elif vectors.shape[1] != self.dimension:
            raise Decoder2VecError(
                f"task {task}: the model returned vectors of dimension {vectors.shape[1]}, "
                f"earlier {self.dimension}"
            )
        return vectors

    def _reads(self, side: str, task_type: str | None) -> bool:
        """Whether the model was trained to read an instruction on these texts: every text, unless
        its folder says "queries" (folder/config.py: a distilled student), then a retrieval query only."""
        trained = getattr(getattr(self.encoder, "config", None), "instructions", "all")
        return trained != "queries" or (side == "query" and task_type == "Retrieval")

    def _token_limit(self, max_length: int | None):
        # Raised for this call only, never lowered: a limit above the texts truncates nothing.
        current = getattr(getattr(self.encoder, "config", None), "max_length", None)
        raise_to = max_length if max_length is not None and current is not None and current < max_length else None
        return encoder_settings(self.encoder, max_length=raise_to)

    def _encode(self, texts, instruction, batch_size: int, side: str = "query", task_type: str | None = None):
        kwargs = dict(batch_size=batch_size, show_progress_bar=self.show_progress_bar)
        if not texts:
            return np.zeros((0, self.dimension or 0), dtype=np.float32)
        if self.style == "sides":
            return self.encoder.encode(texts, side=side, task_type=task_type, **kwargs)
        if self.style == "instruction":
            return self.encoder.encode(texts, instruction=instruction, normalize_embeddings=False, **kwargs)
        if self.style == "prompt" and instruction:
            return self.encoder.encode(texts, prompt=instruction, **kwargs)
        return self.encoder.encode(texts, **kwargs)

    @staticmethod
    def _check(vectors, n: int, task: str) -> np.ndarray:
        if hasattr(vectors, "detach"):  # a torch tensor
            vectors = vectors.detach().float().cpu().numpy()
        try:
            vectors = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise Decoder2VecError(f"task {task}: the model's encode() returned {type(vectors).__name__}, "
                                   f"not an array of vectors") from exc
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise Decoder2VecError(
                f"task {task}: the model returned an array of shape {vectors.shape} for {n} texts; "
                f"expected ({n}, dimension)"
            )
        if n and not np.isfinite(vectors).all():
            bad = int((~np.isfinite(vectors)).any(axis=1).sum())
            raise Decoder2VecError(f"task {task}: the model returned NaN/inf vectors for {bad} of {n} texts")
        return vectors

    def _cache_path(self, texts, instruction, max_length) -> Path | None:
        if self.identity is None:
            return None
        # A raised token limit is another setting (the identity holds the configured one).
        key = [instruction, texts] if max_length is None else [instruction, texts, max_length]
        digest = hashlib.sha1(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:20]
        return cache_dir() / "embeddings" / self.identity / f"{digest}.npy"


def model_identity(encoder, name: str, use_instructions: bool) -> str | None:
    """What decides an encoder's vectors: its settings and a fingerprint of its weights.

    The fingerprint samples every parameter tensor (a strided slice), so it is cheap for any model
    size yet changes when training changes any layer (LoRA adapters included). Encoders without
    torch parameters get no identity and are not cached.
    """
    module = encoder if isinstance(encoder, torch.nn.Module) else getattr(encoder, "model", None)
    if not isinstance(module, torch.nn.Module):
        return None
    digest = hashlib.sha1()
    config = getattr(encoder, "config", None)
    settings = asdict(config) if is_dataclass(config) else {}
    settings.pop("stages", None)
    digest.update(json.dumps([settings, use_instructions, type(encoder).__name__], sort_keys=True, default=str).encode())
    with torch.no_grad():
        for pname, param in module.named_parameters():
            flat = param.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step][:4096].float().cpu().numpy()
            digest.update(f"{pname}{tuple(param.shape)}".encode())
            digest.update(sample.tobytes())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(str(name)).name)[:40]
    return f"{safe}-{digest.hexdigest()[:16]}"
