"""The Encoder: tokenizer + (bidirectional) decoder backbone + pooling -> text vectors.

Everything else in decoder2vec produces an Encoder folder (training) or consumes one
(evaluation, serving, export). The folder describes itself in `decoder2vec_config.json`.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import loading
from .atomic import atomic_folder
from .folder import CONFIG_NAME, EncoderConfig, read_config, write_config
from .bidirectional import is_bidirectional, set_causal
from .chunked_attention import chunked_attention
from .errors import Decoder2VecError
from .pooling import check_pooling, pool
from .st_files import POOLING_TO_ST, write_sentence_transformers_files
from .precision import check_precision, quantize
from .unpadded import block_diagonal_mask, check_unpadded, pack, unpack, uses_varlen_kernel

# Batches with more (batch x length x length) elements than this run attention in query chunks:
# 2**24 is one 4096-token text.
CHUNKED_ATTENTION_ABOVE = 2**24


@dataclass
class Batch:
    """A padded batch: what the backbone and the pooling need, as tensors."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pool_mask: torch.Tensor  # tokens of the text itself: not padding, instruction or special

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.pool_mask)))


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, (list, tuple)):
        raise Decoder2VecError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise Decoder2VecError(f"texts[{i}] is {type(text).__name__}, not str: {text!r:.80}")
    return list(texts)


def _check_instructions(instruction, n: int) -> list[str | None]:
    if instruction is None or isinstance(instruction, str):
        return [instruction or None] * n
    if not isinstance(instruction, (list, tuple)) or len(instruction) != n:
        raise Decoder2VecError(
            f"instruction must be a string, None, or a list with one entry per text ({n}); got "
            f"{type(instruction).__name__} of length {len(instruction) if hasattr(instruction, '__len__') else '?'}"
        )
    for i, item in enumerate(instruction):
        if item is not None and not isinstance(item, str):
            raise Decoder2VecError(f"instruction[{i}] is {type(item).__name__}, not str or None")
    return [item or None for item in instruction]


class Encoder:
    """Turns texts into vectors with a decoder-only LLM.

    >>> encoder = Encoder.from_pretrained()          # packaged SmolLM2-135M, bidirectional, mean pooling
    >>> vectors = encoder.encode(["a text", "another"], normalize_embeddings=True)
    """

    def __init__(self, model, tokenizer, config: EncoderConfig | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or EncoderConfig()
        check_pooling(self.config.pooling)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        # Either side gives the same vectors (positions are computed from the mask); right
        # padding keeps the SDPA mask simple.
        self.padding_side = "right"
        set_causal(self.model, not self.config.bidirectional)
        text_config = self.model.config.get_text_config()
        self.config.dimension = text_config.hidden_size
        positions = getattr(text_config, "max_position_embeddings", None) or getattr(text_config, "n_positions", None)
        if positions and not getattr(text_config, "rope_parameters", None) and self.config.max_length > positions:
            # Learned absolute positions (GPT-2, OPT) have no embedding past their table: a longer
            # input would crash, so the limit is the table. RoPE models may go further.
            warnings.warn(f"max_length={self.config.max_length} exceeds {text_config.model_type}'s "
                          f"{positions} positions; using max_length={positions}", stacklevel=2)
            self.config.max_length = positions
        self._takes_position_ids = "position_ids" in inspect.signature(self._backbone().forward).parameters
        self._compiled = None
        self.path: Path | None = None  # the folder it was loaded from: never saved over

    def compile(self, **options) -> "Encoder":
        """Run inference (encode) through `torch.compile(model, dynamic=True)`: fused element-wise
        kernels (norms, RoPE, activations, int8 (de)quantisation) instead of one eager op each.
        Vectors are unchanged (cosine >= 0.9999); the first encode calls pay a one-time compile
        (minutes on a 2-core CPU; docs/performance.md). Training (gradients on) and long inputs
        (chunked attention) always run eagerly. `options` go to torch.compile."""
        self._compiled = torch.compile(self.model, dynamic=True, **options)
        return self

    # ----------------------------------------------------------------- loading / saving
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike | None = None,
        *,
        pooling: str | None = None,
        bidirectional: bool | None = None,
        max_length: int | None = None,
        instruction_template: str | None = None,
        device: str | None = None,
        dtype=None,
        attn_implementation: str | None = None,
        rope_scaling: dict | None = None,
        quantize: str | None = None,
        compile: bool = False,
        trust_remote_code: bool = False,
    ) -> "Encoder":
        """Load a decoder2vec folder, a Hugging Face model folder or hub id, a .gguf file, or a
        packaged model name (default: the packaged SmolLM2-135M-Instruct). Keyword arguments
        override what a decoder2vec folder says.

        rope_scaling: RoPE scaling for texts longer than the model was trained on, in transformers'
        `rope_parameters` form, e.g. {"rope_type": "linear", "factor": 4.0} or
        {"rope_type": "yarn", "factor": 4.0}; see `loading.apply_rope_scaling`. It is stored in the
        saved folder's config.json, so a trained long-context Encoder reloads with it.
        quantize: "int8" quantises the linear layers for inference (quantization.quantize_model).
        compile: run inference through torch.compile (see `Encoder.compile`)."""
        source = loading.resolve_model(model)
        config = read_config(source) if Path(source).is_dir() else None
        if config is None:
            config = EncoderConfig(base_model=str(model) if model is not None else loading.DEFAULT_MODEL)
        overrides = dict(pooling=pooling, bidirectional=bidirectional, max_length=max_length,
                         instruction_template=instruction_template)
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        check_pooling(config.pooling)
        if config.max_length < 1:
            raise Decoder2VecError(f"max_length must be >= 1, got {config.max_length}")
        net, tokenizer = loading.load_model(
            source, device=device, dtype=dtype, attn_implementation=attn_implementation,
            rope_scaling=rope_scaling, trust_remote_code=trust_remote_code,
        )
        net.eval()
        encoder = cls(net, tokenizer, config)
        encoder.path = Path(source) if Path(source).is_dir() else None
        if quantize is not None:
            # Inference-only weights (see quantization.py and docs/performance.md).
            from .quantization import quantize_model

            quantize_model(encoder, quantize)
        if compile:
            encoder.compile()
        return encoder

    def save_pretrained(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write weights (safetensors), tokenizer, decoder2vec_config.json and the
        sentence-transformers files. Atomic: the folder appears only when complete. An existing
        folder that is not an earlier Encoder folder is refused unless overwrite=True, which
        replaces only decoder2vec's files there (atomic.py); the current folder, its parents and
        the folder this Encoder was loaded from are always refused."""
        path = Path(path)
        with atomic_folder(path, kind="encoder", overwrite=overwrite, sources=[self.path]) as tmp:
            self.write_files(tmp)
        return path

    def write_files(self, folder, *, instructions: dict[str, str] | None = None, exact: bool = False) -> None:
        """What save_pretrained writes, into an existing folder (not atomic by itself: exports
        call it inside their own atomic_folder and add files beside it). `instructions` become
        sentence-transformers prompts; exact=True references decoder2vec's own ST module."""
        self.write_model_files(folder)
        if exact or self.pooling in POOLING_TO_ST:
            # The same folder then also loads with SentenceTransformer(path).
            write_sentence_transformers_files(folder, self.config, self._backbone().config,
                                              instructions=instructions, exact=exact)

    def write_model_files(self, folder) -> None:
        """Backbone weights (safetensors), tokenizer and decoder2vec_config.json."""
        self._backbone().save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        write_config(folder, self.config)

    # ----------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dimension(self) -> int:
        return self.config.dimension

    @property
    def pooling(self) -> str:
        return self.config.pooling

    @property
    def max_length(self) -> int:
        return self.config.max_length

    def is_bidirectional(self) -> bool:
        return is_bidirectional(self.model)

    def _backbone(self):
        # A peft-wrapped model keeps the transformers model one or two levels down.
        net = self.model
        while hasattr(net, "get_base_model") and net is not net.get_base_model():
            net = net.get_base_model()
        return net

    def info(self) -> dict:
        cfg = self.model.config.get_text_config()
        params = sum(p.numel() for p in self.model.parameters())
        return {
            "family": cfg.model_type,
            "parameters": params,
            "hidden_size": cfg.hidden_size,
            "layers": getattr(cfg, "num_hidden_layers", None),
            "max_length": self.config.max_length,
            "model_max_length": getattr(cfg, "max_position_embeddings", None),
            "bidirectional": self.is_bidirectional(),
            "pooling": self.config.pooling,
            "instruction_template": self.config.instruction_template,
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
            "device": str(self.device),
            "stages": [s.get("stage") for s in self.config.stages],
        }

    # ----------------------------------------------------------------- tokenization
    def tokenize(self, texts: Sequence[str], instructions: Sequence[str | None] | None = None):
        """Tokenize instruction + text in one batched call.

        Returns (input_ids, pool_masks, n_truncated): lists of python int lists, one per text.
        The pool mask comes from character offsets: a token belongs to the text when it ends
        after the instruction prefix and is not a special token.
        """
        instructions = instructions or [None] * len(texts)
        prefixes = [
            self.config.instruction_template.format(instruction=ins.strip()) if ins else "" for ins in instructions
        ]
        full = [p + t for p, t in zip(prefixes, texts)]
        enc = self.tokenizer(
            full, add_special_tokens=True, return_offsets_mapping=True, return_special_tokens_mask=True,
            return_attention_mask=False, truncation=False, verbose=False,
        )
        limit = self.config.max_length
        ids_out, masks_out, truncated = [], [], 0
        for ids, offsets, special, prefix in zip(
            enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"], prefixes
        ):
            ends = np.fromiter((end for _, end in offsets), dtype=np.int64, count=len(offsets))
            mask = (ends > len(prefix)) & (np.asarray(special, dtype=bool) == 0)
            if len(ids) > limit:
                truncated += 1
                # Keep a trailing special token (e.g. EOS) that some tokenizers append.
                keep_last = bool(special[-1]) and limit > 1
                ids = ids[: limit - 1] + ids[-1:] if keep_last else ids[:limit]
                mask = np.concatenate([mask[: limit - 1], mask[-1:]]) if keep_last else mask[:limit]
            ids_out.append(ids)
            masks_out.append(mask)
        return ids_out, masks_out, truncated

    def collate(self, ids: Sequence[Sequence[int]], pool_masks: Sequence[np.ndarray]) -> Batch:
        """Pad a list of token id lists into a Batch."""
        n, width = len(ids), max(len(x) for x in ids)
        input_ids = np.full((n, width), self.tokenizer.pad_token_id, dtype=np.int64)
        attention = np.zeros((n, width), dtype=np.int64)
        pooled = np.zeros((n, width), dtype=np.int64)
        for row, (x, m) in enumerate(zip(ids, pool_masks)):
            span = slice(width - len(x), width) if self.padding_side == "left" else slice(0, len(x))
            input_ids[row, span] = x
            attention[row, span] = 1
            pooled[row, span] = m
        return Batch(torch.from_numpy(input_ids), torch.from_numpy(attention), torch.from_numpy(pooled))

    # ----------------------------------------------------------------- forward
    def hidden_states(self, batch: Batch) -> torch.Tensor:
        kwargs = {}
        if self._takes_position_ids:
            # Positions count real tokens only, so left padding does not shift them.
            kwargs["position_ids"] = (batch.attention_mask.cumsum(1) - 1).clamp(min=0)
        n, length = batch.input_ids.shape
        # Long inputs: a padded batch or a sliding-window layer would get a (length x length) mask;
        # chunked attention evaluates it block by block instead (same result, linear memory).
        long = n * length * length > CHUNKED_ATTENTION_ABOVE
        net = self.model
        if self._compiled is not None and not long and not torch.is_grad_enabled():
            net = self._compiled
        with chunked_attention(self._backbone()) if long else contextlib.nullcontext():
            out = net(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs)
        return _last_hidden_state(out)

    def embed(self, batch: Batch) -> torch.Tensor:
        """Differentiable: a padded Batch -> pooled vectors (batch, dim). Training uses this."""
        batch = batch.to(self.device)
        states = self.hidden_states(batch)
        return pool(states, batch.pool_mask, batch.attention_mask, self.config.pooling)

    def embed_unpadded(self, ids: Sequence[Sequence[int]], pool_masks: Sequence[np.ndarray]) -> torch.Tensor:
        """Like `embed`, but the texts go through the model end to end in one row with no padding
        (unpadded.py: varlen flash attention on GPUs, a block-diagonal mask elsewhere)."""
        backbone = self._backbone()
        check_unpadded(backbone, self._takes_position_ids, max(len(x) for x in ids))
        packed = pack(ids).to(self.device)
        kwargs = {"position_ids": packed.position_ids}
        if not uses_varlen_kernel(backbone):
            kwargs["attention_mask"] = block_diagonal_mask(packed.segments, backbone)
        out = self.model(input_ids=packed.input_ids, **kwargs)
        states, attention = unpack(_last_hidden_state(out), packed)
        pool_mask = self.collate(ids, pool_masks).pool_mask.to(self.device)
        return pool(states, pool_mask, attention, self.config.pooling)

    # ----------------------------------------------------------------- encode
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        instruction: str | Sequence[str | None] | None = None,
        batch_size: int = 32,
        max_batch_tokens: int | None = 16384,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        precision: str = "float32",
        show_progress_bar: bool | None = None,
        convert_to_tensor: bool = False,
        unpadded: bool | None = None,
    ):
        """Encode texts into vectors (numpy array, or torch tensor with convert_to_tensor).

        instruction: one string for every text, or a list with one (or None) per text.
        Texts are sorted by length and batched by `batch_size` and `max_batch_tokens` so little
        compute goes to padding; the result comes back in input order.
        unpadded: run each batch's texts end to end with no padding at all (see unpadded.py).
        Default: on when the model uses a flash-attention (varlen) kernel, else off.
        """
        single = isinstance(texts, str)
        texts = _check_texts(texts)
        instructions = _check_instructions(instruction, len(texts))
        check_precision(precision)
        if batch_size < 1:
            raise Decoder2VecError(f"batch_size must be >= 1, got {batch_size}")
        if truncate_dim is not None and not 0 < truncate_dim <= self.dimension:
            raise Decoder2VecError(f"truncate_dim must be in 1..{self.dimension}, got {truncate_dim}")
        dim = truncate_dim or self.dimension
        if not texts:
            out = quantize(np.zeros((0, dim), dtype=np.float32), precision)
            return torch.from_numpy(out) if convert_to_tensor else out

        if unpadded is None:
            unpadded = uses_varlen_kernel(self._backbone())
        ids, masks, truncated = self.tokenize(texts, instructions)
        if truncated:
            warnings.warn(
                f"{truncated} of {len(texts)} texts were longer than max_length={self.max_length} tokens "
                "and were truncated", stacklevel=2,
            )
        order = np.argsort([-len(x) for x in ids], kind="stable")
        batches = _length_batches([len(ids[i]) for i in order], batch_size, max_batch_tokens)
        if show_progress_bar is None:
            show_progress_bar = len(texts) >= 256 and _stderr_is_tty()
        result = np.empty((len(texts), dim), dtype=np.float32)
        from tqdm.auto import tqdm

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), tqdm(total=len(texts), disable=not show_progress_bar, desc="encode") as bar:
                start = 0
                for size in batches:
                    rows = order[start:start + size]
                    start += size
                    rows_ids, rows_masks = [ids[i] for i in rows], [masks[i] for i in rows]
                    if unpadded:
                        vectors = self.embed_unpadded(rows_ids, rows_masks)
                    else:
                        vectors = self.embed(self.collate(rows_ids, rows_masks))
                    vectors = vectors[:, :dim].float()
                    if normalize_embeddings:
                        vectors = torch.nn.functional.normalize(vectors, dim=-1)
                    result[rows] = vectors.cpu().numpy()
                    bar.update(size)
        finally:
            self.model.train(was_training)
        if not np.isfinite(result).all():
            raise Decoder2VecError("the model produced NaN/inf vectors; try dtype='float32'")
        out = quantize(result, precision)
        if single:
            out = out[0]
        return torch.from_numpy(out) if convert_to_tensor else out


def _last_hidden_state(out) -> torch.Tensor:
    # A transformers output object, or a plain tuple from a traced/exported model.
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _length_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None) -> list[int]:
    """Split length-sorted (descending) texts into batch sizes; the first text of each batch is the
    longest, so a batch's padded size is len(first) * count."""
    sizes, i = [], 0
    while i < len(lengths):
        count = batch_size
        if max_batch_tokens:
            count = max(1, min(count, max_batch_tokens // max(lengths[i], 1)))
        count = min(count, len(lengths) - i)
        sizes.append(count)
        i += count
    return sizes


def _stderr_is_tty() -> bool:
    import sys

    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
