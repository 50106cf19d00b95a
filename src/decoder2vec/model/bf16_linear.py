"""bf16 matmuls, everything else fp32: the torch backend's bf16 engine on CPU (`quantize="bf16"`).

Only the Linear layers run in bf16 (their weights stored in bf16, their inputs rounded to bf16 at
the call, bf16 kernels: AVX512-BF16 / AMX through oneDNN); each output is widened back to fp32
and the bias added in fp32. The residual stream, the norms, attention's softmax and pooling stay
fp32. Why not the whole model in bf16 (`dtype="bfloat16"`) or autocast: those also carry the
residual stream / the attention scores in bf16, which is where most of their loss against the
fp32 vectors comes from (benchmarks/bf16_gate.py measures every way; docs/performance.md).
The first decoder layer's Linears stay fp32 too (decoder_layer_prefixes; quantize_model's bf16 branch).

Like int8, it rounds activations, so the torch backend forwards it texts of one length at a time
(backends/base.py unpadded_states): a vector does not depend on its batch. Inference only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import Decoder2VecError


class Bf16Linear(nn.Module):
    """An nn.Linear (or GPT-2 Conv1D) whose matmul runs in bf16 with an fp32 input, output and bias."""

    def __init__(self, linear: nn.Module):
        super().__init__()
        weight = linear.weight.detach()
        if not isinstance(linear, nn.Linear):  # Conv1D keeps (in, out)
            weight = weight.t()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight_bf16", weight.to(torch.bfloat16).contiguous())
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x.to(torch.bfloat16), self.weight_bf16).to(x.dtype)
        return out.add_(self.bias) if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bf16 matmul, fp32 output"


def to_bf16_linears(model: nn.Module, skip: tuple[str, ...] = ()) -> nn.Module:
    """Replace the fp32 Linear (and Conv1D) layers of `model` by Bf16Linear, in place; each fp32
    weight is freed as its bf16 copy is made. Returns the model."""
    targets = [(name, module) for name, module in model.named_modules()
               if (type(module) is nn.Linear or type(module).__name__ == "Conv1D")
               and not any(s in name for s in skip)]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Bf16Linear(module))
        module.weight = None
    return model


def decoder_layer_prefixes(model: nn.Module, first: int = 1, last: int = 0) -> tuple[str, ...]:
    """Full dotted names ("layers.0.", "model.layers.0.", GPT-2 "h.0.") of the first `first` and the
    last `last` decoder layers - the longest nn.ModuleList of `model` - for to_bf16_linears' skip.
    Skip entries match as substrings, so each ends in "." after the index: "layers.1." never matches
    "layers.10.". A model without a ModuleList has no decoder layers: ()."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        return ()
    name, layers = max(lists, key=lambda item: len(item[1]))
    if first < 0 or last < 0 or max(first, last) > len(layers):
        raise Decoder2VecError(f"first={first}, last={last} decoder layers: the model has {len(layers)} "
                               f"({name or 'its root'})")
    chosen = sorted(set(range(first)) | set(range(len(layers) - last, len(layers))))
    return tuple(f"{name}.{i}." if name else f"{i}." for i in chosen)


def has_bf16_linears(model: nn.Module) -> bool:
    return any(isinstance(m, Bf16Linear) for m in model.modules())
