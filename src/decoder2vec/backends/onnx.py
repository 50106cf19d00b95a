"""The ONNX Runtime backend (CPU): the torch backend's padded forward, exported once to ONNX.

`export_graph` traces `PaddedForward` (dynamic batch and length; the bidirectional mask and the
padding-independent position ids are inside the graph). int8 weights: every MatMul with a constant
weight becomes ORT's MatMulNBits with 8 bits, symmetric, one scale per 32 weights of
an output channel - weight-only, so nothing depends on the batch.

onnx, onnxscript and onnxruntime are an optional extra: they are imported inside the functions that
need them (import time: onnxruntime + onnxscript add ~1.5 s to `import decoder2vec` otherwise).
"""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path

import torch

from ..errors import Decoder2VecError
from .base import Backend
from .torch import PaddedForward, TorchBackend

GRAPH = "model.onnx"
EXAMPLE = [[1, 5, 6, 7, 8, 9, 2], [1, 5, 6, 2]]  # any ids below the vocabulary size: shapes only


def require(module: str, purpose: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise Decoder2VecError(f"{purpose} needs the {module!r} package: pip install 'decoder2vec[onnx]' "
                               "(onnx onnxscript onnxruntime)") from None


def export_graph(backend: TorchBackend, path: Path) -> Path:
    """Write `path` (an .onnx file): (input_ids, attention_mask) -> last_hidden_state, fp32."""
    require("onnx", "ONNX export")
    if backend.device.type != "cpu" or next(backend.model.parameters()).dtype != torch.float32:
        raise Decoder2VecError("ONNX export wants the model on CPU in float32: load it with device='cpu', "
                               "dtype='float32'")
    input_ids = torch.tensor([row + [0] * (7 - len(row)) for row in EXAMPLE])
    attention = torch.tensor([[1] * len(row) + [0] * (7 - len(row)) for row in EXAMPLE])
    axes = {0: "batch", 1: "sequence"}
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter: ~2 s for a tiny model where the dynamo exporter takes ~45 s, and
    # the same graph (every tiny family checked to 1e-6 in tests/test_backends.py).
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            PaddedForward(backend).eval(), (input_ids, attention), str(path),
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes}, dynamo=False,
        )
    return path


def quantize_graph(source: Path, target: Path) -> Path:
    """int8 weights: MatMul -> MatMulNBits(bits=8, one scale per 32 weights), symmetric, computed in
    fp32 (accuracy_level 0). accuracy_level=4 (int8 activations, quantised per 32-wide block of each
    row) cost the trained demo encoder 2.70 STS-B points (session 3) and was no faster on a CPU
    without AVX-512 VNNI; weight-only fp32 compute: 0.57 points (docs/performance.md)."""
    onnx = require("onnx", "ONNX int8 weights")
    nbits = require("onnxruntime.quantization.matmul_nbits_quantizer", "ONNX int8 weights")
    model = onnx.load(str(source))
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    quantizer = nbits.MatMulNBitsQuantizer(model, bits=8, block_size=32, is_symmetric=True, accuracy_level=0)
    quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    return target


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, graph: Path, config, pad_id: int, *, weights: str = "float32", threads: int | None = None,
                 options=None):
        """options: an onnxruntime.SessionOptions to start from (benchmarks/profile_encode.py sets
        profiling and graph optimisation levels on it)."""
        super().__init__(config, pad_id)
        ort = require("onnxruntime", "the onnx backend")
        options = options or ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.graph = Path(graph)
        self.weights = weights
        try:
            self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT's own error types (InvalidProtobuf, Fail, ...): name the file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise Decoder2VecError(f"{graph}: onnxruntime cannot load this graph ({first}); the file may be "
                                   "truncated or corrupt: export it again") from None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        (states,) = self.session.run(None, {"input_ids": input_ids.cpu().numpy(),
                                            "attention_mask": attention_mask.cpu().numpy()})
        return torch.from_numpy(states)

    def info(self) -> dict:
        return {**super().info(), "graph": str(self.graph)}
