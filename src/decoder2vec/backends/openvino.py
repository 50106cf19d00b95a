"""The OpenVINO backend (CPU): the exported ONNX graph (onnx.py) converted to OpenVINO IR.

int8 weights: NNCF's `compress_weights` (INT8_SYM, per output channel, weight-only), so nothing
depends on the batch. Inference precision is pinned to f32 unless asked for (dtype="bfloat16":
INFERENCE_PRECISION_HINT=bf16, OpenVINO's bf16 kernels on CPUs with AVX512-BF16 or AMX): OpenVINO
would otherwise run bf16 on CPUs that have it, and the vectors would no longer equal the torch
path's.

int8 activations (quantize="int8-activations"): the same int8 weights, and OpenVINO's dynamic
quantisation of each matmul's input in groups of ACTIVATION_GROUP channels of one token (u8/s8
kernels: VNNI, AMX-INT8). A group's scale comes from that token alone, never from the batch; the
texts go one length per forward (base.unpadded_states), so a vector does not depend on its batch.
Static per-layer activation scales (NNCF's full int8 with SmoothQuant, calibrated on 32 paragraphs)
were tried first and lost far more (min cosine 0.36 against fp32 on SmolLM2, 0.89 for these).

openvino and nncf are an optional extra, imported inside the functions that need them (import
time: ~1 s for openvino, several for nncf).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .base import Backend
from .onnx import require

IR = "model.xml"
ACTIVATION_GROUP = 32  # channels per activation scale (OpenVINO's DYNAMIC_QUANTIZATION_GROUP_SIZE)
INT8_WEIGHTS = ("int8", "int8-activations")


def convert_graph(onnx_graph: Path, target: Path, *, weights: str = "float32") -> Path:
    """ONNX -> OpenVINO IR (target .xml + .bin), int8-compressed weights for weights='int8'."""
    ov = require("openvino", "the openvino backend")
    # Core.read_model, not ov.convert_model: the same IR without convert's preprocessing pass (~3 s).
    model = ov.Core().read_model(str(onnx_graph))
    if weights in INT8_WEIGHTS:
        nncf = require("nncf", "OpenVINO int8 weights")
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM)
    ov.save_model(model, str(target), compress_to_fp16=False)
    return target


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, ir: Path, config, pad_id: int, *, weights: str = "float32", threads: int | None = None,
                 properties: dict | None = None, precision: str = "f32"):
        """properties: extra OpenVINO CPU properties over the defaults below (benchmarks/profile_encode.py
        compares them; e.g. {"PERF_COUNT": True} for per-node timings)."""
        super().__init__(config, pad_id)
        ov = require("openvino", "the openvino backend")
        # LATENCY: one request at a time uses every core (THROUGHPUT would split them into streams
        # that a synchronous encode loop leaves idle). CACHE_DIR: OpenVINO keeps the compiled blob
        # beside the IR, so a later load skips compiling.
        defaults = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                    "CACHE_DIR": str(Path(ir).parent / "compiled"),
                    # int8 weights stay weight-only everywhere: on CPUs with VNNI/AMX OpenVINO would
                    # otherwise quantise activations too (groups of 32 per token), the scheme that cost
                    # the ONNX backend 2.7 STS-B points. (No VNNI here: same vectors either way.)
                    "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}
        properties = {**defaults, **(properties or {})}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = threads
        if weights == "int8-activations":
            properties["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = ACTIVATION_GROUP
        self.ir = Path(ir)
        self.precision = precision
        # bf16 or int8 activations: same-length batches (base.unpadded_states)
        self.unpadded = precision != "f32" or weights == "int8-activations"
        # What the matmuls run in (Encoder.info's dtype): OpenVINO's bf16 takes fp32 weights to bf16.
        self.weights = "bfloat16" if (precision, weights) == ("bf16", "float32") else weights
        self.compiled = ov.Core().compile_model(str(ir), "CPU", properties)
        self.request = self.compiled.create_infer_request()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.request.infer({"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()})
        return torch.from_numpy(out[self.compiled.output(0)].copy())

    def info(self) -> dict:
        return {**super().info(), "ir": str(self.ir), "inference_precision": self.precision}
