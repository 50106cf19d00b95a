"""The PyTorch backend: the transformers module itself, eager or compiled, padded or packed.

Which path a batch takes is decided here and nowhere else:
- packed (model/unpadded.py): texts end to end with no padding - the default on flash-attention
  (varlen) GPUs, on request elsewhere;
- chunked attention (model/chunked_attention.py): batches above CHUNKED_ATTENTION_ABOVE
  (batch x length^2) run attention in query chunks (linear memory); never compiled;
- compiled (`compile()`): torch.compile(dynamic=True) for inference; training (gradients on)
  always runs the real module so LoRA gradients flow.
Every forward passes use_cache=False: an encoder never decodes, and a KV cache costs memory.

matmul="onednn" (what `fast=True` picks on CPUs where it measured fastest, cpu.py) runs the fp32
Linear layers through oneDNN's matmul with bf16 allowed: on CPUs with AMX oneDNN computes them
from bf16 inputs with fp32 accumulation and fp32 outputs; elsewhere it runs its own fp32 AVX-512
kernels (on AMD, 2-3x MKL's). Norms, softmax, the residual stream and pooling stay fp32 either way.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Sequence

import torch

from ..model.chunked_attention import chunked_attention
from ..cpu import cpu_features
from ..errors import Decoder2VecError, choices_error
from ..model.quantization import quantized_weights
from ..model.unpadded import block_diagonal_mask, check_unpadded, pack, unpack, uses_varlen_kernel
from .base import Backend, pad, unpadded_states

# Batches with more (batch x length x length) elements than this run attention in query chunks:
# 2**24 is one 4096-token text.
CHUNKED_ATTENTION_ABOVE = 2**24


def last_hidden_state(out) -> torch.Tensor:
    # A transformers output object, or a plain tuple from a traced/exported model.
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def backbone(model):
    # A peft-wrapped model keeps the transformers model one or two levels down.
    net = model
    while hasattr(net, "get_base_model") and net is not net.get_base_model():
        net = net.get_base_model()
    return net


MATMULS = ("default", "onednn")


@contextlib.contextmanager
def onednn_matmuls():
    """fp32 matmuls through oneDNN with bf16 allowed (torch's process-wide setting, restored after:
    another Encoder in the process keeps its exact fp32 matmuls)."""
    before = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        yield
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = before


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model, pad_id: int, matmul: str = "default"):
        super().__init__(model.config.get_text_config(), pad_id)
        if matmul not in MATMULS:
            raise choices_error("matmul", matmul, MATMULS)
        self.model = model
        self.compiled = None
        self.matmul = matmul
        self.takes_position_ids = "position_ids" in inspect.signature(backbone(model).forward).parameters

    @property
    def weights(self) -> str:
        return quantized_weights(self.model) or str(next(self.model.parameters()).dtype).replace("torch.", "")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def unpadded(self) -> bool:
        # Activations rounded below fp32 on the CPU (int8; bf16 weights or matmuls; oneDNN's bf16 matmuls): a
        # text's vector would depend on its batch's padding (base.unpadded_states). On a CPU,
        # same-length batches cost nothing (no padded tokens to compute); GPUs keep their batches.
        if self.device.type != "cpu":
            return False
        # oneDNN takes fp32 matmuls to bf16 only on AMX; elsewhere they stay fp32 (padding-stable to
        # ~1e-5) and same-length batches would only cost speed (a oneDNN kernel per new length).
        bf16_matmuls = self.matmul == "onednn" and cpu_features().amx
        return bf16_matmuls or self.weights not in ("float32", "float64")

    def compile(self, **options) -> None:
        self.compiled = torch.compile(self.model, dynamic=True, **options)

    def matmuls(self):
        """The context every forward runs in: oneDNN matmuls for matmul="onednn" on CPU."""
        if self.matmul == "onednn" and self.device.type == "cpu" and not torch.is_grad_enabled():
            return onednn_matmuls()
        return contextlib.nullcontext()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with self.matmuls():
            return self._forward(input_ids, attention_mask)

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        kwargs = {"use_cache": False}
        if self.takes_position_ids:
            # Positions count real tokens only, so left padding does not shift them.
            kwargs["position_ids"] = (attention_mask.cumsum(1) - 1).clamp(min=0)
        n, length = input_ids.shape
        # Long inputs: a padded batch or a sliding-window layer would get a (length x length) mask;
        # chunked attention evaluates it block by block instead (same result, linear memory).
        long = n * length * length > CHUNKED_ATTENTION_ABOVE
        net = self.model
        if self.compiled is not None and not long and not torch.is_grad_enabled():
            net = self.compiled
        with chunked_attention(backbone(self.model)) if long else contextlib.nullcontext():
            out = net(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return last_hidden_state(out)

    def states(self, ids: Sequence[Sequence[int]], packed: bool | None = None):
        net = backbone(self.model)
        if packed is None:
            packed = uses_varlen_kernel(net)
        if self.unpadded:
            if packed:
                raise Decoder2VecError(f"packed batches and {self.weights} weights on the CPU do not go together: "
                                       "each length runs on its own there (backends/base.py unpadded_states); "
                                       "leave packed unset")
            def forward(input_ids, mask):
                return self.forward(input_ids.to(self.device), mask.to(self.device))
            return unpadded_states(forward, ids, self.pad_id, self.max_forward_tokens)
        if not packed:
            input_ids, attention = pad(ids, self.pad_id)
            input_ids, attention = input_ids.to(self.device), attention.to(self.device)
            return self.forward(input_ids, attention), attention
        # The texts end to end in one row (model/unpadded.py); states come back right padded.
        check_unpadded(net, self.takes_position_ids, max(len(x) for x in ids))
        batch = pack(ids).to(self.device)
        kwargs = {"position_ids": batch.position_ids, "use_cache": False}
        if not uses_varlen_kernel(net):
            kwargs["attention_mask"] = block_diagonal_mask(batch.segments, net)
        model = self.compiled if self.compiled is not None and not torch.is_grad_enabled() else self.model
        with self.matmuls():
            return unpack(last_hidden_state(model(input_ids=batch.input_ids, **kwargs)), batch)

    def info(self) -> dict:
        return {**super().info(), "compiled": self.compiled is not None, "device": str(self.device),
                "matmul": self.matmul}


class PaddedForward(torch.nn.Module):
    """What the exported backends trace: the torch backend's padded forward (bidirectional mask
    and padding-independent position ids inside the graph)."""

    def __init__(self, backend: TorchBackend):
        super().__init__()
        self.backend = backend
        self.model = backend.model

    def forward(self, input_ids, attention_mask):
        return self.backend.forward(input_ids, attention_mask)
