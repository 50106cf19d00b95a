"""bf16 matmuls, everything else fp32: the torch backend's bf16 engine on CPU (`quantize="bf16"`).

Only the Linear layers run in bf16 (their weights stored in bf16, their inputs rounded to bf16 at
the call, bf16 kernels: AVX512-BF16 / AMX through oneDNN); each output is widened back to fp32
and the bias added in fp32. The residual stream, the norms, attention's softmax and pooling stay
fp32. Why not the whole model in bf16 (`dtype="bfloat16"`) or autocast: those also carry the
residual stream / the attention scores in bf16, which is where most of their loss against the
fp32 vectors comes from (benchmarks/bf16_gate.py measures every way; docs/performance.md).

Like int8, it rounds activations, so the torch backend forwards it texts of one length at a time
(backends/base.py unpadded_states): a vector does not depend on its batch. Inference only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def has_bf16_linears(model: nn.Module) -> bool:
    return any(isinstance(m, Bf16Linear) for m in model.modules())
