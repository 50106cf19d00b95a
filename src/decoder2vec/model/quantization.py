"""int8 weights for the torch backend: every Linear layer runs as an int8 x int8 -> int32 matmul.

Weights are quantised once, per output channel (static). Activations are quantised on the fly,
per token (one scale per row, from that row alone), except a few outlier input channels that run
at ~15 bits (two int8 limbs, both sides). The outlier channels are fixed per layer when the model is quantised (from a fixed
calibration text set), never chosen from the batch: a token's vector then does not depend on the
other texts in the batch, their order or padding (the same bound as fp32, tests/test_backends.py).
Per-token scales matter for LLMs: some tokens carry activations far larger than the rest, and one
scale for the whole batch (torch's `quantize_dynamic`) would round the other tokens to almost
nothing - and make them depend on the batch. The matmul is `torch._int_mm` (oneDNN, VNNI on x86).

Quality: a model whose vectors move a lot under small weight changes moves under int8 too. The
untrained bidirectional SmolLM2 is such a model on very short texts (a 0.3% weight perturbation
alone gives a worst cosine of 0.92 there); docs/performance.md has the measured figures.

    Encoder.from_pretrained(name, quantize="int8")       # the usual way
    quantize_model(encoder, "int8")                      # in place, on a loaded Encoder

Inference only: the int8 weights are buffers, not parameters, so nothing trains them.
"""

from __future__ import annotations

import ctypes
import gc

import torch
import torch.nn as nn

from ..errors import Decoder2VecError, choices_error
from .bf16_linear import decoder_layer_prefixes, has_bf16_linears, to_bf16_linears

# "bf16": the Linear matmuls in bf16, everything else fp32 (model/bf16_linear.py; CPU bf16 engine).
# "int8-activations": OpenVINO's int8 weights with per-token int8 activations (backends/openvino.py);
# the torch int8 layer below quantises activations per token already.
SCHEMES = ("int8", "bf16", "int8-activations")
# A handful of input channels (LLM "massive activations") can be 100x the rest; per-token scales
# alone would round the other channels of those tokens to zero. The OUTLIER_FRACTION input
# channels with the largest calibration activations run at ~15 bits instead (LLM.int8()'s
# decomposition, in integers: _split_rows); on SmolLM2 ~2 of 576 channels are real outliers, the rest is headroom.
OUTLIER_FRACTION = 1 / 32  # ~3% of the matmul at 15 bits
# Fixed texts whose activations pick each layer's outlier channels (the channels are a property
# of the model, not of the text: a few varied sentences find them).
CALIBRATION_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "def encode(texts): return [model(t) for t in texts]  # code, numbers 3.14159 and URLs https://x.org",
    "Hvad er en sætningsvektor? Eine Frage, une question, una pregunta.",
    "Retrieve passages that answer the question: how do transformers attend to tokens?",
)


def _quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: x ~= q * scale, q in [-127, 127], scale (rows, 1).
    Few passes over x on purpose: in eager mode these element-wise passes, not the int8 matmul,
    are what an int8 layer spends most of its time on."""
    peak = torch.linalg.vector_norm(x, ord=float("inf"), dim=-1, keepdim=True).clamp_(min=1e-12)
    q = (x * (127.0 / peak)).round_().to(torch.int8)  # |x| * 127 / peak <= 127: no clamp needed
    return q, peak / 127.0


def _dense(t: torch.Tensor) -> torch.Tensor:
    """A row-major copy with canonical strides: `.contiguous()` keeps odd strides on size-1 dims,
    and torch._int_mm on CPU reads a (1, n) operand with stride (1, 1) wrongly (torch 2.13)."""
    return torch.empty(t.shape, dtype=t.dtype).copy_(t)


def _split_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x ~= (hi * 128 + lo) * scale per row, hi in [-127, 127], lo in [-64, 64] (int8 each): 15 bits."""
    if x.shape[-1] == 0:  # no outlier channels
        return x.to(torch.int8), x.to(torch.int8), x.new_ones(x.shape[0], 1)
    peak = torch.linalg.vector_norm(x, ord=float("inf"), dim=-1, keepdim=True).clamp_(min=1e-12)
    fixed = (x * (16256.0 / peak)).round_()  # 16256 = 127 * 128
    hi = (fixed / 128.0).round_()
    return hi.to(torch.int8), (fixed - hi * 128.0).to(torch.int8), peak / 16256.0


class Int8Linear(nn.Module):
    """A Linear whose weight is int8 (per output channel) and whose input is quantised per token,
    with fixed `outliers` input channels at ~15 bits. Built from an nn.Linear or from GPT-2's Conv1D
    (the same layer with its weight transposed)."""

    def __init__(self, linear: nn.Module, outliers: torch.Tensor | None = None):
        super().__init__()
        weight = linear.weight.detach().float()
        if not isinstance(linear, nn.Linear):  # Conv1D keeps (in, out)
            weight = weight.t()
        self.out_features, self.in_features = weight.shape
        q, scale = _quantize_rows(weight)
        # (out, in) row-major, used as (in, out) column-major: the layout _int_mm is fastest with.
        self.register_buffer("weight_scale", scale.reshape(1, -1))
        outliers = torch.zeros(0, dtype=torch.long) if outliers is None else outliers.long().sort().values
        self.register_buffer("outliers", outliers)
        # The outlier input channels get ~15-bit precision (an error there is multiplied by a huge
        # activation): their weights as two int8 limbs (scale per output channel), their int8
        # columns in the main matmul zeroed.
        hi, lo, outlier_scale = _split_rows(weight.index_select(1, outliers))
        self.register_buffer("weight_outliers_hi", _dense(hi.t()))
        self.register_buffer("weight_outliers_cross", _dense(torch.cat([lo.t(), hi.t()])))  # (lo; hi) for (hi, lo)
        self.register_buffer("weight_outliers_scale", outlier_scale.reshape(1, -1))
        self.register_buffer("weight_int8", q.index_fill(1, outliers, 0).contiguous())
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape, dtype = x.shape, x.dtype
        rows = x.reshape(-1, self.in_features).float()
        q, scale = _quantize_rows(rows.index_fill(1, self.outliers, 0.0))
        out = torch._int_mm(q, self.weight_int8.t()) * scale  # int32 * float -> float, one pass
        out.mul_(self.weight_scale)
        if len(self.outliers):
            out.add_(self._outlier_product(rows.index_select(1, self.outliers)))
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*shape[:-1], self.out_features).to(dtype)

    def _outlier_product(self, x: torch.Tensor) -> torch.Tensor:
        """x @ outlier weights with both sides as 15-bit fixed point in int8 limbs (hi * 128 + lo):
        integer matmuls are exact, so a row's result does not depend on how many rows came with it.
        (A float matmul's does: BLAS picks kernels by the row count, and the last-bit difference
        would move int8-rounded activations downstream - see backends/base.py unpadded_states.)"""
        hi, lo, scale = _split_rows(x)
        high = torch._int_mm(_dense(hi), self.weight_outliers_hi).float()
        cross = torch._int_mm(torch.cat([hi, lo], 1), self.weight_outliers_cross)
        # hi*hi carries 128 * 128, the cross terms 128; lo*lo (2**-14 of the product) is left out.
        return (high * 16384.0).add_(cross.float(), alpha=128.0).mul_(scale).mul_(self.weight_outliers_scale)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8, " \
               f"{len(self.outliers)} 15-bit channels"


def _is_linear(module: nn.Module) -> bool:
    # Exact types: a LoRA layer or an already-quantised one subclasses or wraps these.
    return type(module) is nn.Linear or type(module).__name__ == "Conv1D"


def _backbone(model_or_encoder):
    return getattr(model_or_encoder, "model", None) if hasattr(model_or_encoder, "encode") else model_or_encoder


def quantize_model(model_or_encoder, scheme: str = "int8", *, skip: tuple[str, ...] = (), calibration=None):
    """Replace the Linear (and GPT-2 Conv1D) layers of an Encoder's backbone, or of any nn.Module,
    by int8 ones, in place, one layer at a time (each fp32 weight is freed as its int8 copy is
    made); returns what it was given.

    calibration: a callable running the model on fixed inputs, used once to find each layer's
    outlier input channels. For an Encoder it is CALIBRATION_TEXTS through its own tokenizer; a
    plain module without one gets no 15-bit channels.
    skip: substrings of module names to leave in float (e.g. ("lm_head",)). Embedding tables
    stay float: they are lookups, not matmuls. Run on CPU; call after any LoRA merge."""
    if scheme not in SCHEMES:
        raise choices_error("quantize scheme", scheme, SCHEMES)
    if scheme == "int8-activations":
        raise Decoder2VecError("quantize='int8-activations' runs on backend='openvino'; on torch, quantize='int8' "
                               "already quantises activations (per token)")
    model = _backbone(model_or_encoder)
    if scheme == "bf16":
        # The first decoder layer stays fp32: on a trained German Gemma-3-270M encoder all-bf16 Linears
        # missed the 0.999 cosine gate (min 0.99876 on 300 texts) and the drift starts in layer 0;
        # with it fp32, min 0.99986 at 3.17x torch fp32 against 3.43x all-bf16
        # (benchmarks/bf16_gate.py --fp32-first-layers; docs/performance.md, "The bf16 accuracy gate").
        to_bf16_linears(model, (*skip, *decoder_layer_prefixes(model, first=1)))
        _release_freed_memory()
        return model_or_encoder
    targets = [
        (name, module) for name, module in model.named_modules()
        if _is_linear(module) and not any(s in name for s in skip)
    ]
    if calibration is None and hasattr(model_or_encoder, "encode"):
        calibration = _encoder_calibration(model_or_encoder)
    peaks = _input_peaks(model, [m for _, m in targets], calibration) if calibration else {}
    for name, module in targets:
        replace_with_int8(model, name, module, peaks.get(id(module)))
    _own_float_tensors(model)
    _release_freed_memory()
    return model_or_encoder


def _in_features(module: nn.Module) -> int:
    return module.weight.shape[1] if isinstance(module, nn.Linear) else module.weight.shape[0]


def replace_with_int8(model: nn.Module, name: str, module: nn.Module, peak: torch.Tensor | None) -> None:
    """Put `module` (the Linear called `name` in `model`) back as its Int8Linear, the
    OUTLIER_FRACTION input channels with the largest calibration `peak` kept at 15 bits (None: no
    calibration reached it, none); its fp32 weight goes now, not after the whole model."""
    outliers = None
    if peak is not None:
        count = max(1, round(_in_features(module) * OUTLIER_FRACTION))
        outliers = peak.topk(count).indices
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, Int8Linear(module, outliers))
    module.weight = None


def record_input_peak(peaks: dict, key, args) -> None:
    """Fold a layer call's input into peaks[key]: the largest |activation| per input channel."""
    x = args[0].detach().reshape(-1, args[0].shape[-1]).float().abs().amax(0)
    peaks[key] = torch.maximum(peaks[key], x) if key in peaks else x


def _encoder_calibration(encoder):
    def run():
        ids, masks, _ = encoder.tokenize(list(CALIBRATION_TEXTS))
        batch = encoder.collate(ids, masks)
        net = encoder.model
        device = next(net.parameters()).device
        net(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device), use_cache=False)
    return run


def _input_peaks(model: nn.Module, layers, calibration) -> dict[int, torch.Tensor]:
    """Per input channel, the largest |activation| each layer sees on the calibration inputs."""
    peaks: dict[int, torch.Tensor] = {}

    def record(module, args):
        record_input_peak(peaks, id(module), args)

    handles = [layer.register_forward_pre_hook(record) for layer in layers]
    try:
        with torch.inference_mode():
            calibration()
    finally:
        for handle in handles:
            handle.remove()
    return {key: value.cpu() for key, value in peaks.items()}


def _own_float_tensors(model: nn.Module) -> None:
    """transformers memory-maps the checkpoint: every weight is a view into one file mapping,
    which stays mapped (and resident, once read) while any weight still points into it. Copy the
    float weights left after quantisation (embeddings, norms) so the mapping can go."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            tensor.data = tensor.data.clone()


def _release_freed_memory() -> None:
    """Hand the freed fp32 weights back to the OS: glibc keeps freed heap pages otherwise, and
    the int8 model would hold the fp32 model's memory for the rest of the process."""
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """glibc's malloc_trim: return freed heap pages to the OS (no garbage collection first)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def is_quantized(model_or_encoder) -> bool:
    model = _backbone(model_or_encoder)
    return any(isinstance(m, Int8Linear) for m in model.modules())


def quantized_weights(model_or_encoder) -> str | None:
    """"int8", "bf16" (Linear matmuls only) or None: what quantize_model made of the model."""
    model = _backbone(model_or_encoder)
    return "int8" if is_quantized(model) else "bf16" if has_bf16_linears(model) else None
