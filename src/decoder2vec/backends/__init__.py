"""Inference backends: how a padded batch of token ids becomes last hidden states.

One interface (base.Backend), one small module per engine:

- torch.py    - PyTorch: eager, torch.compile'd, packed (varlen) and chunked long-input paths;
                fp32/bf16 or int8 weights (model/quantization.py). The only backend that trains.
- onnx.py     - ONNX Runtime (CPU): the torch forward exported once to an ONNX graph; int8 weights
                as ORT MatMulNBits (8-bit, per-channel, weight-only).
- openvino.py - OpenVINO (CPU): the same ONNX graph converted to OpenVINO IR; int8 weights by
                NNCF's weight compression (per-channel, weight-only).

The Encoder chooses one in `from_pretrained(backend=...)` and never branches on it afterwards:
tokenization, instructions, batching, pooling and post-processing are the Encoder's own code.
Int8 on every backend is per-channel static weight quantization: nothing is chosen from the batch,
so a text's vector does not depend on the texts it is batched with.
"""

from __future__ import annotations

from ..errors import choices_error
from .base import Backend
from .cache import artifact_dir
from .torch import TorchBackend

BACKENDS = ("torch", "onnx", "openvino")
EXPORTED = ("onnx", "openvino")  # backends that run an exported artifact, not the torch module


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise choices_error("backend", name, BACKENDS)
    return name


__all__ = ["BACKENDS", "EXPORTED", "Backend", "TorchBackend", "artifact_dir", "check_backend"]
