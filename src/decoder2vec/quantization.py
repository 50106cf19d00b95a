"""int8 inference: every Linear layer of the backbone runs as an int8 x int8 -> int32 matmul.

Weights are quantised once, per output channel; activations are quantised on the fly, per token
(one scale per row), except a few outlier input channels that stay in float. Per-token scales
matter for LLMs: some tokens carry activations far larger than the rest, and one scale for the
whole batch (torch's `quantize_dynamic`) rounds the other tokens to almost nothing. The matmul is
`torch._int_mm` (oneDNN, VNNI on x86): ~3x the fp32 matmul throughput on AVX-512 CPUs.

Quality: a model whose vectors move a lot under small weight changes moves under int8 too. The
untrained bidirectional SmolLM2 is such a model on very short texts (a 0.3% weight perturbation
alone gives a worst cosine of 0.92 there); docs/performance.md has the measured figures.

    from decoder2vec.quantization import quantize_model
    quantize_model(encoder, "int8")          # in place; encoder.encode(...) now runs int8

Inference only: the int8 weights are buffers, not parameters, so nothing trains them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .errors import choices_error

SCHEMES = ("int8",)
# A handful of input channels (LLM "massive activations") can be 100x the rest; per-token scales
# alone would round the other channels of those tokens to zero. The OUTLIER_FRACTION input
# channels with the largest values in the batch run in float instead (LLM.int8()'s decomposition);
# on SmolLM2 ~2 of 576 channels are real outliers, the rest of the float share is headroom. A
# fixed count (not a threshold) keeps the layer free of data-dependent branches, so
# torch.compile can fuse it into a few kernels.
OUTLIER_FRACTION = 1 / 32  # ~3% of the matmul in float


def _quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: x ~= q * scale, q in [-127, 127], scale (rows, 1).
    Few passes over x on purpose: in eager mode these element-wise passes, not the int8 matmul,
    are what an int8 layer spends most of its time on."""
    peak = torch.linalg.vector_norm(x, ord=float("inf"), dim=-1, keepdim=True).clamp_(min=1e-12)
    q = (x * (127.0 / peak)).round_().to(torch.int8)  # |x| * 127 / peak <= 127: no clamp needed
    return q, peak / 127.0


class Int8Linear(nn.Module):
    """A Linear whose weight is int8 (per output channel) and whose input is quantised per token.
    Built from an nn.Linear or from GPT-2's Conv1D (the same layer with its weight transposed)."""

    def __init__(self, linear: nn.Module):
        super().__init__()
        weight = linear.weight.detach().float()
        if not isinstance(linear, nn.Linear):  # Conv1D keeps (in, out)
            weight = weight.t()
        self.out_features, self.in_features = weight.shape
        self.outlier_count = max(1, round(self.in_features * OUTLIER_FRACTION))
        q, scale = _quantize_rows(weight)
        # (out, in) row-major, used as (in, out) column-major: the layout _int_mm is fastest with.
        self.register_buffer("weight_int8", q.contiguous())
        # A second int8 digit of the weight (its rounding error in 1/254 steps), used only for the
        # outlier channels: there a weight error is multiplied by a huge activation.
        residual = torch.round((weight / scale - q.float()) * 254).clamp_(-127, 127).to(torch.int8)
        self.register_buffer("weight_residual", residual.contiguous())
        self.register_buffer("weight_scale", scale.reshape(1, -1))
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape, dtype = x.shape, x.dtype
        rows = x.reshape(-1, self.in_features).float()
        peaks = torch.linalg.vector_norm(rows, ord=float("inf"), dim=0)
        outliers = peaks.topk(self.outlier_count).indices
        q, scale = _quantize_rows(rows.index_fill(1, outliers, 0.0))
        out = torch._int_mm(q, self.weight_int8.t()) * scale  # int32 * float -> float, one pass
        out.mul_(self.weight_scale)
        # The outlier input channels in float, with two int8 digits of their weights.
        digits = self.weight_int8.index_select(1, outliers).float()
        digits += self.weight_residual.index_select(1, outliers).float() / 254
        out.addmm_(rows.index_select(1, outliers), (digits * self.weight_scale.reshape(-1, 1)).t())
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*shape[:-1], self.out_features).to(dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _is_linear(module: nn.Module) -> bool:
    # Exact types: a LoRA layer or an already-quantised one subclasses or wraps these.
    return type(module) is nn.Linear or type(module).__name__ == "Conv1D"


def _backbone(model_or_encoder):
    return getattr(model_or_encoder, "model", None) if hasattr(model_or_encoder, "encode") else model_or_encoder


def quantize_model(model_or_encoder, scheme: str = "int8", *, skip: tuple[str, ...] = ()):
    """Replace the Linear (and GPT-2 Conv1D) layers of an Encoder's backbone, or of any nn.Module,
    by int8 ones,
    in place; returns what it was given.

    skip: substrings of module names to leave in float (e.g. ("lm_head",)). Embedding tables
    stay float: they are lookups, not matmuls. Run on CPU; call after any LoRA merge."""
    if scheme not in SCHEMES:
        raise choices_error("quantize scheme", scheme, SCHEMES)
    model = _backbone(model_or_encoder)
    targets = [
        (name, module) for name, module in model.named_modules()
        if _is_linear(module) and not any(s in name for s in skip)
    ]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int8Linear(module))
    _own_float_tensors(model)
    _release_freed_memory()
    return model_or_encoder


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
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def is_quantized(model_or_encoder) -> bool:
    model = _backbone(model_or_encoder)
    return any(isinstance(m, Int8Linear) for m in model.modules())
