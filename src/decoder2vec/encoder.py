"""The Encoder: tokenizer + (bidirectional) decoder backbone + pooling -> text vectors.

One pipeline whatever runs the model: tokenize (+ the instruction pool mask) -> backend forward
(backends/: torch | onnx | openvino, chosen once in `from_pretrained`) -> pool -> post-process
(normalize, truncate_dim, precision). Everything else in decoder2vec produces an Encoder folder
(training) or consumes one (evaluation, serving, export). The folder describes itself in
`decoder2vec_config.json` (folder/config.py).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .model import int8_loading, loading
from .atomic import atomic_folder
from .backends import EXPORTED, Backend, TorchBackend, check_backend
from .backends.cache import artifact_dir, artifact_key, building, check_own_artifact, needs_building
from .backends.onnx import GRAPH, OnnxBackend, export_graph, quantize_graph
from .backends.openvino import IR, OpenVinoBackend, convert_graph
from .backends.torch import backbone
from .model.bidirectional import is_bidirectional, set_causal
from .model.chat_format import wrap
from .cpu import fast_engine
from .encode_options import ON_EMPTY, EncodeOptions, takes_encode_options
from .errors import Decoder2VecError, check_int, choices_error
from .folder.config import CONFIG_NAME, EncoderConfig, read_config, write_config
from .folder.files import ONNX_FILE
from .folder.latent_attention import load_latent_attention, save_latent_attention
from .folder.precision_ranges import FILE as RANGES_NAME, read_ranges, write_ranges
from .model.pooling import LatentAttention, check_pooling, latent_attention_pool, pool
from .model.precision import CALIBRATED, calibration_ranges, check_ranges, empty, quantize_embeddings
from .model.quantization import SCHEMES, quantize_model
from .folder.sentence_transformers import POOLING_TO_ST, write_sentence_transformers_files
from .folder.trained_dims import untrained_dim_warning

__all__ = ["Batch", "EncodeOptions", "Encoder", "EncoderConfig", "CONFIG_NAME", "ON_EMPTY", "RANGES_NAME"]


@dataclass
class Batch:
    """A padded batch: what the backbone and the pooling need, as tensors."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pool_mask: torch.Tensor  # tokens of the text itself: not padding, instruction or special

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.pool_mask)))


def _check_unicode(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Decoder2VecError(f"{where} holds a lone surrogate {text[exc.start]!r} at character {exc.start}: "
                               "not valid Unicode text") from None


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)):
        raise Decoder2VecError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise Decoder2VecError(f"texts[{i}] is {type(text).__name__}, not str: {text!r:.80}")
        _check_unicode(text, f"texts[{i}]")
    return list(texts)


def _check_instructions(instruction, n: int) -> list[str | None]:
    if instruction is None or isinstance(instruction, str):
        if instruction:
            _check_unicode(instruction, "instruction")
        return [instruction or None] * n
    if not isinstance(instruction, (list, tuple)) or len(instruction) != n:
        raise Decoder2VecError(
            f"instruction must be a string, None, or a list with one entry per text ({n}); got "
            f"{type(instruction).__name__} of length {len(instruction) if hasattr(instruction, '__len__') else '?'}"
        )
    for i, item in enumerate(instruction):
        if item is not None and not isinstance(item, str):
            raise Decoder2VecError(f"instruction[{i}] is {type(item).__name__}, not str or None")
        if item:
            _check_unicode(item, f"instruction[{i}]")
    return [item or None for item in instruction]


def _split_empty(texts: list[str], instructions: list, on_empty: str):
    """Texts with nothing to pool (empty or whitespace only): an error naming the first, or (skip)
    left out with a warning naming them. Returns the kept texts, instructions and input rows."""
    empty_rows = [i for i, text in enumerate(texts) if not text.strip()]
    if not empty_rows:
        return texts, instructions, None
    if on_empty == "error":
        raise Decoder2VecError(f"texts[{empty_rows[0]}] is empty ({len(empty_rows)} empty text(s) in all): an empty "
                               "text has no vector; remove it or pass on_empty='skip'")
    shown = ", ".join(map(str, empty_rows[:20])) + (", ..." if len(empty_rows) > 20 else "")
    warnings.warn(f"on_empty='skip': left out {len(empty_rows)} empty text(s) at input index {shown}; the result "
                  f"has {len(texts) - len(empty_rows)} rows, in input order", stacklevel=3)
    keep = [i for i in range(len(texts)) if i not in set(empty_rows)]
    return [texts[i] for i in keep], [instructions[i] for i in keep], keep


class Encoder:
    """Turns texts into vectors with a decoder-only LLM.

    >>> encoder = Encoder.from_pretrained()          # packaged SmolLM2-135M, bidirectional, mean pooling
    >>> vectors = encoder.encode(["a text", "another"], normalize_embeddings=True)
    >>> fast = Encoder.from_pretrained(backend="openvino", quantize="int8")   # same pipeline, other engine
    """

    def __init__(self, model, tokenizer, config: EncoderConfig | None = None, *, backend: Backend | None = None):
        """`model`: a transformers model (the torch backend), or None with an exported `backend`."""
        self.tokenizer = tokenizer
        self.config = config or EncoderConfig()
        check_pooling(self.config.pooling)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        # Either side gives the same vectors (positions are computed from the mask); encode's
        # backends pad on the right, and collate follows this for training batches.
        self.padding_side = "right"
        if backend is None:
            set_causal(model, not self.config.bidirectional)
            backend = TorchBackend(model, self.tokenizer.pad_token_id)
        self.backend = backend
        text_config = backend.config
        self.config.dimension = text_config.hidden_size
        positions = getattr(text_config, "max_position_embeddings", None) or getattr(text_config, "n_positions", None)
        if positions and not getattr(text_config, "rope_parameters", None) and self.config.max_length > positions:
            # Learned absolute positions (GPT-2, OPT) have no embedding past their table: a longer
            # input would crash, so the limit is the table. RoPE models may go further.
            warnings.warn(f"max_length={self.config.max_length} exceeds {text_config.model_type}'s "
                          f"{positions} positions; using max_length={positions}", stacklevel=2)
            self.config.max_length = positions
        self.precision_ranges: dict | None = None  # {"normalize_embeddings": bool, "ranges": (2, dim)}
        self.path: Path | None = None  # the folder it was loaded from: never saved over
        # NV-Embed's trained latent-attention layer between token states and pooling (the folder's
        # latent_attention.safetensors), run in torch after any backend's forward; None: plain pooling.
        self.latent_attention: LatentAttention | None = None

    @property
    def model(self):
        """The torch module (None on an exported backend). Training swaps it (a wrapped model)."""
        return getattr(self.backend, "model", None)

    @model.setter
    def model(self, value) -> None:
        if not isinstance(self.backend, TorchBackend):
            raise Decoder2VecError(f"the {self.backend.name} backend has no torch model to replace")
        self.backend.model = value

    def compile(self, **options) -> "Encoder":
        """Run inference (encode) through `torch.compile(model, dynamic=True)` (torch backend):
        fused element-wise kernels instead of one eager op each. Vectors are unchanged (cosine >=
        0.9999); the first encode calls pay a one-time compile (docs/performance.md). Training
        (gradients on) and long inputs (chunked attention) always run eagerly."""
        if not isinstance(self.backend, TorchBackend):
            raise Decoder2VecError(f"compile() applies to the torch backend, not {self.backend.name!r} "
                                   "(which runs its own compiled graph already)")
        self.backend.compile(**options)
        return self

    # ----------------------------------------------------------------- loading / saving
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike | None = None,
        *,
        backend: str = "torch",
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
        threads: int | None = None,
        trust_remote_code: bool = False,
        fast: bool = False,
    ) -> "Encoder":
        """Load a decoder2vec folder, a Hugging Face model folder or hub id, a .gguf file, or a
        packaged model name (default: the packaged SmolLM2-135M-Instruct). Keyword arguments
        override what a decoder2vec folder says.

        backend: "torch" (default; CPU or GPU, trains), "onnx" (ONNX Runtime, CPU) or "openvino"
        (CPU): the same vectors (cosine >= 0.9999 in fp32). The exported backends export the model
        once and keep the artifact (the folder's own `onnx/` from `decoder2vec export --to onnx`,
        else decoder2vec's cache), so later loads skip the export. threads: their CPU threads.
        quantize: "int8" weights (per-channel, static: vectors do not depend on the batch) on any
        backend (model/quantization.py, backends/); a local folder on CPU is quantised while loading,
        never holding the fp32 model (model/int8_loading.py).
        quantize="bf16" (torch backend): only the Linear matmuls in bf16, norms, softmax, residual
        stream, pooling and the first decoder layer in fp32 (model/bf16_linear.py).
        quantize="int8-activations" (openvino): int8 weights and per-token int8 activations (VNNI/AMX).
        rope_scaling: RoPE scaling for texts longer than the model was trained on, in transformers'
        `rope_parameters` form, e.g. {"rope_type": "yarn", "factor": 4.0}; see
        `loading.apply_rope_scaling`. Stored in the saved folder's config.json.
        compile: run inference through torch.compile (torch backend; see `Encoder.compile`).
        dtype="bfloat16" on backend="openvino": OpenVINO's bf16 inference precision (fp32 weights).
        fast: on CPU, the fastest engine that kept min cosine >= 0.999 against the fp32 vectors
        when measured on a CPU of this class (cpu.FAST_ENGINES: backend, precision); it chooses
        backend/dtype/quantize itself. Default False: the exact fp32 path."""
        if fast:
            return cls._fast(model, backend=backend, dtype=dtype, quantize=quantize, device=device, pooling=pooling,
                             bidirectional=bidirectional, max_length=max_length,
                             instruction_template=instruction_template, attn_implementation=attn_implementation,
                             rope_scaling=rope_scaling, compile=compile, threads=threads,
                             trust_remote_code=trust_remote_code)
        check_backend(backend)
        if quantize is not None and quantize not in SCHEMES:
            raise choices_error("quantize", quantize, SCHEMES)
        check_int("threads", threads, optional=True)
        if device is not None:
            loading.check_device(device)
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
        check_int("max_length", config.max_length)
        if backend in EXPORTED:
            bf16 = backend == "openvino" and loading.parse_dtype(dtype) == torch.bfloat16
            if backend == "onnx" and loading.parse_dtype(dtype) == torch.bfloat16:
                raise Decoder2VecError("dtype='bfloat16' on backend='onnx': ONNX Runtime has no bf16 matmul kernels "
                                       "on CPU; use backend='openvino' or 'torch' for bf16")
            if quantize == "bf16":
                raise Decoder2VecError(f"quantize='bf16' (bf16 Linear matmuls) is a torch-backend engine, not "
                                       f"backend={backend!r}; OpenVINO's bf16 is dtype='bfloat16'")
            if quantize == "int8-activations" and backend != "openvino":
                raise Decoder2VecError(f"quantize='int8-activations' runs on backend='openvino', not {backend!r}")
            torch_only = dict(dtype=None if bf16 else dtype, attn_implementation=attn_implementation,
                              rope_scaling=rope_scaling, compile=compile or None,
                              device=device if device not in (None, "cpu") else None)
            given = [key for key, value in torch_only.items() if value is not None]
            if given:
                raise Decoder2VecError(f"{', '.join(given)} apply to the torch backend, not backend={backend!r} "
                                       "(CPU, float32 graph)")
            encoder = cls._exported(source, config, backend, quantize, threads, trust_remote_code,
                                    precision="bf16" if bf16 else "f32")
        else:
            load = dict(device=device, dtype=dtype, attn_implementation=attn_implementation,
                        rope_scaling=rope_scaling, trust_remote_code=trust_remote_code)
            # int8 from a local folder: quantised while loading, never holding the fp32 model.
            stream = int8_loading.streams(source, quantize, device, dtype)
            net, tokenizer = loading.load_model(source, empty=stream, **load)
            if stream and not int8_loading.fits(net, source):  # legacy tensor names: load in full
                stream = False
                net, tokenizer = loading.load_model(source, **load)
            net.eval()
            encoder = cls(net, tokenizer, config)
            if stream:
                int8_loading.load_quantized(encoder, source)
            elif quantize is not None:
                quantize_model(encoder, quantize)
            if threads:
                torch.set_num_threads(threads)
            if compile:
                encoder.compile()
        encoder.path = Path(source) if Path(source).is_dir() else None
        encoder.precision_ranges = read_ranges(source)
        encoder.latent_attention = load_latent_attention(source)
        return encoder

    @classmethod
    def _exported(cls, source: str, config: EncoderConfig, backend: str, quantize, threads, trust_remote_code,
                  precision: str = "f32"):
        """An Encoder on the onnx/openvino backend, from its artifact in the folder or the cache;
        built (once) from the fp32 ONNX graph, itself exported (once) from the torch model."""
        weights = quantize or "float32"
        graph = _onnx_graph(source, config, trust_remote_code)
        artifact = graph
        if (backend, weights) != ("onnx", "float32"):
            key = artifact_key(source, bidirectional=config.bidirectional, weights=weights, engine=backend)
            folder = artifact_dir(loading.cache_dir(), key)
            artifact = folder / (GRAPH if backend == "onnx" else IR)
            if needs_building(folder):  # missing, or a file changed since it was written
                with building(folder) as tmp:
                    if backend == "onnx":
                        quantize_graph(graph, tmp / GRAPH)
                    else:
                        convert_graph(graph, tmp / IR, weights=weights)
        tokenizer = loading.load_tokenizer(source, trust_remote_code=trust_remote_code)
        text_config = loading.load_config(source, trust_remote_code=trust_remote_code).get_text_config()
        if backend == "onnx":
            engine = OnnxBackend(artifact, text_config, tokenizer.pad_token_id, weights=weights, threads=threads)
        else:
            engine = OpenVinoBackend(artifact, text_config, tokenizer.pad_token_id, weights=weights, threads=threads,
                                     precision=precision)
        return cls(None, tokenizer, config, backend=engine)

    @classmethod
    def _fast(cls, model, *, backend, dtype, quantize, device, compile, **load) -> "Encoder":
        """from_pretrained(fast=True): this CPU class's engine from cpu.FAST_ENGINES."""
        given = dict(backend=None if backend == "torch" else backend, dtype=dtype, quantize=quantize,
                     compile=compile or None)
        given = [key for key, value in given.items() if value is not None]
        if given:
            raise Decoder2VecError(f"fast=True chooses the engine itself; drop {', '.join(given)} (or drop fast)")
        if torch.device(device or loading.default_device()).type != "cpu":
            return cls.from_pretrained(model, device=device, **load)  # GPUs: the default is already bf16
        engine = fast_engine()
        matmul = engine.pop("matmul", "default")
        encoder = cls.from_pretrained(model, device=device if engine.get("backend", "torch") == "torch" else None,
                                      **engine, **load)
        if matmul != "default":
            encoder.backend.matmul = matmul
        return encoder

    def save_pretrained(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write weights (safetensors), tokenizer, decoder2vec_config.json and the
        sentence-transformers files. Atomic: the folder appears only when complete. An existing
        folder that is not an earlier Encoder folder is refused unless overwrite=True, which
        replaces only decoder2vec's files there (atomic.py); the current folder, its parents and
        the folder this Encoder was loaded from are always refused."""
        self._require_torch("save_pretrained")
        path = Path(path)
        with atomic_folder(path, kind="encoder", overwrite=overwrite, sources=[self.path]) as tmp:
            self.write_files(tmp)
        return path

    def write_files(self, folder, *, instructions: dict[str, str] | None = None, exact: bool = False) -> None:
        """What save_pretrained writes, into an existing folder (not atomic by itself: exports
        call it inside their own atomic_folder and add files beside it). `instructions` become
        sentence-transformers prompts; exact=True references decoder2vec's own ST module."""
        self.write_model_files(folder)
        # sentence-transformers' Pooling cannot run a latent-attention layer: only decoder2vec's
        # own ST module (exact) reproduces such a folder's vectors.
        exact = exact or self.latent_attention is not None
        if exact or self.pooling in POOLING_TO_ST:
            # The same folder then also loads with SentenceTransformer(path).
            write_sentence_transformers_files(folder, self.config, self._backbone().config,
                                              instructions=instructions, exact=exact)

    def write_model_files(self, folder) -> None:
        """Backbone weights (safetensors), tokenizer, decoder2vec_config.json (and the calibrated
        precision ranges, when there are some)."""
        self._require_torch("saving")
        self._backbone().save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        write_config(folder, self.config)
        if self.latent_attention is not None:
            save_latent_attention(self.latent_attention, folder)
        if self.precision_ranges is not None:
            write_ranges(folder, self.precision_ranges)

    def _require_torch(self, what: str) -> None:
        if not isinstance(self.backend, TorchBackend):
            raise Decoder2VecError(f"{what} needs the torch backend; this Encoder runs {self.backend.name!r}: load "
                                   "the folder with backend='torch' to save or export it")

    def calibrate(self, texts: Sequence[str], *, normalize_embeddings: bool = False, instruction=None) -> np.ndarray:
        """Compute and keep the per-dimension ranges that precision="int8"/"uint8" use (saved
        with the Encoder). Use a few hundred texts like the ones you will encode."""
        vectors = self.encode(texts, instruction=instruction, normalize_embeddings=normalize_embeddings)
        ranges = calibration_ranges(vectors)
        self.precision_ranges = {"normalize_embeddings": normalize_embeddings, "ranges": ranges}
        return ranges

    # ----------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return self.backend.device

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
        if self.model is None:
            return self.config.bidirectional  # fixed when the graph was exported
        return is_bidirectional(self.model)

    def _backbone(self):
        return backbone(self.model)

    def info(self) -> dict:
        cfg = self.backend.config
        parameters = sum(p.numel() for p in self.model.parameters()) if self.model is not None else None
        return {
            "family": cfg.model_type,
            "parameters": parameters,
            "hidden_size": cfg.hidden_size,
            "layers": getattr(cfg, "num_hidden_layers", None),
            "max_length": self.config.max_length,
            "model_max_length": getattr(cfg, "max_position_embeddings", None),
            "bidirectional": self.is_bidirectional(),
            "pooling": self.config.pooling,
            "instruction_template": self.config.instruction_template,
            "dtype": self.backend.weights,
            "device": str(self.device),
            "backend": self.backend.name,
            "stages": [s.get("stage") for s in self.config.stages],
        }

    # ----------------------------------------------------------------- tokenization
    def tokenize(self, texts: Sequence[str], instructions: Sequence[str | None] | None = None):
        """Tokenize instruction + text in one batched call.

        Returns (input_ids, pool_masks, n_truncated): lists of python int lists, one per text.
        With `config.chat_format` the two are wrapped in that chat format first (LLM2Vec's
        strings, chat_format.wrap; the closing marker is pooled with the text, as LLM2Vec does).
        The pool mask (`config.pool_span`): "offsets", a token belongs to the text when it ends
        after the instruction prefix and is not a special token; "llm2vec", the last n tokens,
        n = the text's token count tokenized alone. Over max_length, the instruction is shortened
        first: the text keeps its first (max_length - specials) tokens, so a long instruction
        never leaves nothing (or only itself) to pool.
        """
        parts = self._model_inputs(texts, instructions or [None] * len(texts))
        enc = self.tokenizer(
            [head + tail for head, tail in parts], add_special_tokens=True, return_offsets_mapping=True,
            return_special_tokens_mask=True, return_attention_mask=False, truncation=False, verbose=False,
        )
        spans = _llm2vec_spans(self.tokenizer, [tail for _, tail in parts]) \
            if self.config.pool_span == "llm2vec" else None
        limit = self.config.max_length
        ids_out, masks_out, truncated = [], [], 0
        for row, (ids, offsets, special, (head, _)) in enumerate(zip(
            enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"], parts
        )):
            special = np.asarray(special, dtype=bool)
            if spans is None:
                ends = np.fromiter((end for _, end in offsets), dtype=np.int64, count=len(offsets))
                mask = (ends > len(head)) & ~special
            else:
                mask = np.zeros(len(ids), dtype=bool)
                mask[len(ids) - min(spans[row], len(ids)):] = True
            if len(ids) > limit:
                truncated += 1
                ids, mask = _fit(np.asarray(ids), mask, special, limit)
            ids_out.append(list(ids) if not isinstance(ids, list) else ids)
            masks_out.append(mask)
        return ids_out, masks_out, truncated

    def _model_inputs(self, texts: Sequence[str], instructions: Sequence[str | None]) -> list[tuple[str, str]]:
        """(head, tail) per text: the model reads head + tail, and the text starts at len(head).
        The instruction goes through instruction_template, then both through the chat format."""
        prefixes = [self.config.instruction_template.format(instruction=ins.strip()) if ins else ""
                    for ins in instructions]
        fmt = self.config.chat_format
        return [wrap(p, t, fmt) for p, t in zip(prefixes, texts)] if fmt else list(zip(prefixes, texts))

    def collate(self, ids: Sequence[Sequence[int]], pool_masks: Sequence[np.ndarray]) -> Batch:
        """Pad a list of token id lists into a Batch (on `padding_side`; encode's backends always
        pad on the right, training may choose either: positions follow the mask)."""
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
        """Last hidden states of a padded Batch (the backend's forward)."""
        return self.backend.forward(batch.input_ids.to(self.device), batch.attention_mask.to(self.device))

    def embed(self, batch: Batch) -> torch.Tensor:
        """Differentiable (torch backend): a padded Batch -> pooled vectors (batch, dim), float32.
        Training uses this."""
        batch = batch.to(self.device)
        states = self.hidden_states(batch)
        return self._pool(states, batch.pool_mask, batch.attention_mask)

    def _pool(self, states: torch.Tensor, pool_mask: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.latent_attention is not None:
            return latent_attention_pool(self.latent_attention, states, pool_mask, attention_mask, self.config.pooling)
        return pool(states, pool_mask, attention_mask, self.config.pooling)

    def _embed_texts(self, ids, pool_masks, packed: bool | None) -> torch.Tensor:
        """The inference forward: token id lists -> pooled vectors, the backend choosing how."""
        states, attention = self.backend.states(ids, packed=packed)
        width = states.shape[1]
        pool_mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, mask in enumerate(pool_masks):
            pool_mask[row, :len(mask)] = mask
        return self._pool(states, torch.from_numpy(pool_mask).to(states.device), attention)

    # ----------------------------------------------------------------- encode
    @takes_encode_options
    def encode(self, texts: str | Sequence[str], options: EncodeOptions | None = None, **keywords):
        """Encode texts into vectors (numpy array, or torch tensor with convert_to_tensor).

        options: an EncodeOptions, and/or its fields as keywords, which replace its values
        (`encode(texts, batch_size=8, normalize_embeddings=True)`); each field's help is in
        encode_options.py.
        instruction: one string for every text, or a list with one (or None) per text.
        on_empty: "error" (default) refuses an empty or whitespace-only text, naming its index;
        "skip" leaves such texts out (a warning names their indices; the rows keep input order).
        precision: float32 | int8 | uint8 | binary | ubinary, as sentence-transformers'
        quantize_embeddings. int8/uint8 need ranges: `calibration_embeddings` (float vectors of a
        representative set), else those of `calibrate()` (saved with the Encoder).
        Texts are sorted by length and batched by `batch_size` and `max_batch_tokens` so little
        compute goes to padding; the result comes back in input order.
        unpadded: (torch backend) run each batch's texts end to end with no padding at all (see
        model/unpadded.py). Default: on when the model uses a flash-attention (varlen) kernel.
        output_value: "sentence_embedding" (default: one pooled vector per text) or
        "token_embeddings" (sentence-transformers' name): per text a dict with the vectors of the
        text's own tokens and their character offsets into the text (see `encode_tokens`).
        """
        options = EncodeOptions.of(options, **keywords)
        if options.output_value == "token_embeddings":
            return self.encode_tokens(texts, options)
        single = isinstance(texts, str)
        texts = _check_texts(texts)
        instructions = _check_instructions(options.instruction, len(texts))
        truncate_dim, precision = options.truncate_dim, options.precision
        if truncate_dim is not None and truncate_dim > self.dimension:  # EncodeOptions checked it is >= 1
            raise Decoder2VecError(f"truncate_dim must be in 1..{self.dimension}, got {truncate_dim}")
        dim = truncate_dim or self.dimension
        untrained = untrained_dim_warning(self.config, truncate_dim)
        if untrained:
            warnings.warn(untrained, stacklevel=2)
        ranges = self._ranges(precision, options.calibration_embeddings, options.normalize_embeddings, dim)
        texts, instructions, _ = _split_empty(texts, instructions, options.on_empty)
        if not texts:
            out = empty(dim, precision)
            return torch.from_numpy(out) if options.convert_to_tensor else out

        ids, masks, truncated = self.tokenize(texts, instructions)
        _warn_truncated(truncated, len(texts), self.max_length)
        result = np.empty((len(texts), dim), dtype=np.float32)
        for rows in self._batches(ids, options):
            vectors = self._embed_texts([ids[i] for i in rows], [masks[i] for i in rows], options.unpadded)
            vectors = vectors[:, :dim]
            if options.normalize_embeddings:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            result[rows] = vectors.cpu().numpy()
        if not np.isfinite(result).all():
            raise Decoder2VecError("the model produced NaN/inf vectors; try dtype='float32'")
        out = quantize_embeddings(result, precision, ranges)
        if single:
            out = out[0]
        return torch.from_numpy(out) if options.convert_to_tensor else out

    def _batches(self, ids, options: EncodeOptions):
        """Yield the input rows of each batch (longest texts first, so little compute goes to
        padding), with the model in eval mode and gradients off; its mode is restored after."""
        order = np.argsort([-len(x) for x in ids], kind="stable")
        batches = _length_batches([len(ids[i]) for i in order], options.batch_size, options.max_batch_tokens)
        show_progress_bar = options.show_progress_bar
        if show_progress_bar is None:
            show_progress_bar = len(ids) >= 256 and _stderr_is_tty()
        model = self.model
        was_training = model.training if model is not None else False
        if model is not None:
            model.eval()
        try:
            with torch.inference_mode(), tqdm(total=len(ids), disable=not show_progress_bar, desc="encode") as bar:
                start = 0
                for size in batches:
                    yield order[start:start + size]
                    start += size
                    bar.update(size)
        finally:
            if model is not None:
                model.train(was_training)

    @takes_encode_options
    def encode_tokens(self, texts: str | Sequence[str], options: EncodeOptions | None = None, **keywords):
        """Token embeddings: per text, the last hidden states of the text's own tokens - no
        instruction, padding or special tokens - as a dict:

        - "token_embeddings": float32 (n_tokens, dim) (a torch tensor with convert_to_tensor);
        - "offsets": int64 (n_tokens, 2), each token's [start, end) characters in the text itself
          (not in instruction + text), clipped to the text where a token also covers the
          instruction's last character;
        - "input_ids": int64 (n_tokens,).

        One dict for one string, else a list in input order (on_empty="skip" leaves empty texts
        out, as encode does). The model reads exactly what encode's sentence path reads
        (instruction, chat format); the text's tokens are chosen by character offsets whatever
        `pool_span` says. A text over max_length keeps its first tokens (a warning says how many
        texts were cut). normalize_embeddings: each token vector to unit length. Vectors do not
        depend on the batch (same as the sentence path). `model.words.aggregate` turns them into word
        vectors. options: encode's (an EncodeOptions and/or keywords); precision, truncate_dim and
        calibration_embeddings shape sentence vectors and are refused here, output_value is ignored."""
        options = EncodeOptions.of(options, **keywords)
        if options.precision != "float32" or options.calibration_embeddings is not None:
            raise Decoder2VecError(f"precision={options.precision!r} applies to sentence embeddings; token embeddings "
                                   "are float32 (quantize them yourself if you need to)")
        if options.truncate_dim is not None:
            raise Decoder2VecError(f"truncate_dim={options.truncate_dim} applies to sentence embeddings (Matryoshka "
                                   f"training shapes the pooled vector); token embeddings keep all "
                                   f"{self.dimension} dimensions")
        single = isinstance(texts, str)
        texts = _check_texts(texts)
        instructions = _check_instructions(options.instruction, len(texts))
        texts, instructions, _ = _split_empty(texts, instructions, options.on_empty)
        if not texts:
            return []  # every text was empty and skipped
        ids, masks, offsets, truncated = self._text_tokens(texts, instructions)
        _warn_truncated(truncated, len(texts), self.max_length)
        out: list = [None] * len(texts)
        for rows in self._batches(ids, options):
            states, _ = self.backend.states([ids[i] for i in rows], packed=options.unpadded)
            for row, i in enumerate(rows):
                vectors = states[row, :len(ids[i])][torch.from_numpy(masks[i]).to(states.device)].float()
                if not torch.isfinite(vectors).all():
                    raise Decoder2VecError(f"the model produced NaN/inf token vectors for texts[{i}]; "
                                           "try dtype='float32'")
                if options.normalize_embeddings:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                vectors = vectors.cpu() if options.convert_to_tensor else vectors.cpu().numpy()
                token_ids = np.asarray(ids[i], dtype=np.int64)[masks[i]]
                out[i] = {"token_embeddings": vectors, "offsets": offsets[i],
                          "input_ids": torch.from_numpy(token_ids) if options.convert_to_tensor else token_ids}
        return out[0] if single else out

    def _text_tokens(self, texts: list[str], instructions: list[str | None]):
        """(ids, text masks, offsets into each text, n_truncated) for token embeddings.

        The model input is built as `tokenize` builds it (instruction template, chat format), but
        the text's tokens are found by character offsets: those, not special, that overlap the
        text's characters (a chat format's closing marker is not the text). Over max_length,
        `_fit` keeps the text's first tokens, so the kept tokens' offsets are a prefix."""
        fmt = self.config.chat_format
        parts = self._model_inputs(texts, instructions)
        strings = [head + tail for head, tail in parts]
        spans = [(len(head), len(head) + (len(text.rstrip()) if fmt else len(text))) for (head, _), text in zip(parts, texts)]
        enc = self.tokenizer(strings, add_special_tokens=True, return_offsets_mapping=True,
                             return_special_tokens_mask=True, return_attention_mask=False, truncation=False,
                             verbose=False)
        ids_out, masks_out, offsets_out, truncated = [], [], [], 0
        for i, (ids, offsets, special) in enumerate(zip(enc["input_ids"], enc["offset_mapping"],
                                                       enc["special_tokens_mask"])):
            start, end = spans[i]
            offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
            special = np.asarray(special, dtype=bool)
            # As tokenize: a token ends after the prefix. With a chat format it also starts before
            # the closing marker (whitespace tokens trimmed to an empty range sit at their end).
            mask = ~special & (offsets[:, 1] > start)
            if fmt:
                mask &= offsets[:, 0] < end
            text_offsets = np.clip(offsets[mask] - start, 0, end - start)
            if len(ids) > self.config.max_length:
                truncated += 1
                ids, mask = _fit(np.asarray(ids), mask, special, self.config.max_length)
                text_offsets = text_offsets[:int(mask.sum())]
            if not mask.any():
                raise Decoder2VecError(f"texts[{i}] has no token of its own within max_length="
                                       f"{self.config.max_length} (an instruction that fills it?)")
            ids_out.append(list(ids))
            masks_out.append(np.asarray(mask, dtype=bool))
            offsets_out.append(text_offsets)
        return ids_out, masks_out, offsets_out, truncated

    def _ranges(self, precision: str, calibration_embeddings, normalize_embeddings: bool, dim: int):
        """The int8/uint8 ranges for this call: from calibration_embeddings, else the calibrated
        ones (sliced to truncate_dim); None for the other precisions."""
        if precision not in CALIBRATED:
            return None
        if calibration_embeddings is not None:
            return check_ranges(calibration_ranges(calibration_embeddings), dim)
        if self.precision_ranges is None:
            raise Decoder2VecError(
                f"precision={precision!r} needs calibrated ranges: pass calibration_embeddings= (float vectors of a "
                "representative set, as sentence-transformers) or call encoder.calibrate(texts) once (saved with "
                "the Encoder)")
        if self.precision_ranges["normalize_embeddings"] != normalize_embeddings:
            raise Decoder2VecError(
                f"the calibrated ranges are for normalize_embeddings={self.precision_ranges['normalize_embeddings']}, "
                f"this call has normalize_embeddings={normalize_embeddings}: calibrate again or match it")
        return check_ranges(np.asarray(self.precision_ranges["ranges"], dtype=np.float32)[:, :dim], dim)


def _llm2vec_spans(tokenizer, tails: list[str]) -> list[int]:
    """How many trailing tokens LLM2Vec pools for each text: the token count of the text (the part
    after its separator) tokenized alone, without special tokens (LLM2Vec.tokenize's embed_mask)."""
    return [len(x) for x in tokenizer(tails, add_special_tokens=False, verbose=False)["input_ids"]]


def _fit(ids: np.ndarray, mask: np.ndarray, special: np.ndarray, limit: int):
    """Cut one tokenized (instruction + text) to `limit` tokens: the text keeps as many of its first
    tokens as fit beside the special tokens, the instruction gets what is left (its start), and
    the specials go last if even one text token would not fit."""
    positions = np.arange(len(ids))
    text = positions[mask]
    lead = positions[special & (positions < (text[0] if len(text) else len(ids)))]
    trail = positions[special & (positions > (text[-1] if len(text) else len(ids)))]
    instruction = positions[~mask & ~special]
    specials = list(lead) + list(trail)
    while specials and len(specials) >= limit:
        specials.pop()  # trailing ones first
    text_kept = text[: limit - len(specials)]
    room = limit - len(specials) - len(text_kept)
    keep = np.sort(np.concatenate([np.asarray(specials, dtype=np.int64), text_kept, instruction[:room]]))
    return ids[keep].tolist(), mask[keep]


def _onnx_graph(source: str, config: EncoderConfig, trust_remote_code: bool) -> Path:
    """The fp32 ONNX graph every exported backend starts from: the folder's own (`decoder2vec
    export --to onnx`), else the cached one, exported from the torch model on first use."""
    own = Path(source) / ONNX_FILE
    if own.is_file():
        check_own_artifact(own.parent)
        return own
    key = artifact_key(source, bidirectional=config.bidirectional, weights="float32", engine="onnx")
    folder = artifact_dir(loading.cache_dir(), key)
    if needs_building(folder):
        net, _ = loading.load_model(source, device="cpu", dtype="float32", trust_remote_code=trust_remote_code)
        net.eval()
        set_causal(net, not config.bidirectional)
        with building(folder) as tmp:
            export_graph(TorchBackend(net, 0), tmp / GRAPH)
    return folder / GRAPH


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


def _warn_truncated(truncated: int, n: int, max_length: int) -> None:
    if truncated:
        warnings.warn(f"{truncated} of {n} texts were longer than max_length={max_length} tokens and were "
                      "truncated (an instruction is cut first)", stacklevel=3)


def _stderr_is_tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
