"""`decoder2vec export --to onnx`: an Encoder folder with its ONNX graph in `onnx/model.onnx`.

The folder is a normal Encoder folder (weights, tokenizer, config, sentence-transformers files)
plus the graph of the torch backend's padded forward (backends/onnx.py). Loading it with
`Encoder.from_pretrained(folder, backend="onnx")` uses that graph directly (no export), and
`backend="openvino"` converts it once into decoder2vec's cache.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..atomic import atomic_folder
from ..backends.cache import record_artifact
from ..backends.onnx import export_graph, require
from ..backends.torch import TorchBackend
from ..encoder import Encoder
from ..errors import Decoder2VecError
from .files import ONNX_FILE


def export_onnx(encoder_or_path, out_dir, *, overwrite: bool = False) -> Path:
    """Write an Encoder folder with `onnx/model.onnx` beside the weights; atomic. Returns out_dir."""
    require("onnx", "ONNX export")
    encoder = encoder_or_path if isinstance(encoder_or_path, Encoder) else Encoder.from_pretrained(
        encoder_or_path, device="cpu", dtype="float32")
    if not isinstance(encoder.backend, TorchBackend):
        raise Decoder2VecError(f"export --to onnx needs the torch backend, not {encoder.backend.name!r}")
    if encoder.device.type != "cpu" or next(encoder.model.parameters()).dtype != torch.float32:
        raise Decoder2VecError("ONNX export wants the encoder on CPU in float32: load it with device='cpu', "
                               "dtype='float32'")
    out = Path(out_dir)
    with atomic_folder(out, kind="onnx export", overwrite=overwrite, sources=[encoder.path]) as folder:
        encoder.write_files(folder)
        export_graph(encoder.backend, folder / ONNX_FILE)
        record_artifact(folder / ONNX_FILE.parent)  # checked on every load
    return out
