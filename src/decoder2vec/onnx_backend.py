"""ONNX: export an Encoder's backbone once, then encode (and serve) on CPU with onnxruntime.

`export_onnx` writes a normal Encoder folder plus `onnx/model.onnx`: a graph from
(input_ids, attention_mask) to last_hidden_state, with the bidirectional mask and the
padding-independent position ids inside it (the graph is traced through `Encoder.hidden_states`).
`OnnxEncoder` is an Encoder whose backbone call is that graph: tokenization, instructions,
batching, pooling, normalisation and truncation are the Encoder's own code, so the vectors
match `Encoder.encode` (to float rounding) and the server can use it unchanged.

Needs the `onnx`, `onnxscript` (export) and `onnxruntime` (inference) packages.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .encoder import CONFIG_NAME, Batch, Encoder, EncoderConfig
from .atomic import atomic_folder
from .errors import Decoder2VecError

ONNX_FILE = Path("onnx") / "model.onnx"


class _HiddenStates(torch.nn.Module):
    """What gets traced: the Encoder's own forward, minus pooling (done outside, in torch)."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder
        self.model = encoder.model

    def forward(self, input_ids, attention_mask):
        return self.encoder.hidden_states(Batch(input_ids, attention_mask, attention_mask))


def _require(module: str, purpose: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise Decoder2VecError(f"{purpose} needs the {module!r} package: pip install onnx onnxscript onnxruntime") \
            from None


def export_onnx(encoder_or_path, out_dir, *, overwrite: bool = False) -> Path:
    """Write an Encoder folder with `onnx/model.onnx` beside the weights; atomic. Returns out_dir."""
    _require("onnxscript", "ONNX export")
    encoder = encoder_or_path if isinstance(encoder_or_path, Encoder) else Encoder.from_pretrained(encoder_or_path)
    if encoder.device.type != "cpu" or next(encoder.model.parameters()).dtype != torch.float32:
        raise Decoder2VecError("ONNX export wants the encoder on CPU in float32: load it with device='cpu', "
                               "dtype='float32'")
    out = Path(out_dir)
    with atomic_folder(out, kind="onnx export", overwrite=overwrite, sources=[encoder.path]) as folder:
        encoder.write_files(folder)
        (folder / ONNX_FILE).parent.mkdir()
        ids, masks, _ = encoder.tokenize(["An example text to trace.", "Another."])
        example = encoder.collate(ids, masks)
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        axes = {0: batch, 1: sequence}
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                _HiddenStates(encoder).eval(), (example.input_ids, example.attention_mask), str(folder / ONNX_FILE),
                input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                dynamic_shapes={"input_ids": axes, "attention_mask": axes}, dynamo=True, external_data=False,
            )
    return out


class OnnxEncoder(Encoder):
    """An Encoder whose backbone is an onnxruntime session (CPU). Same encode() and tokenize()."""

    def __init__(self, session, tokenizer, config: EncoderConfig):
        # Not Encoder.__init__: there is no torch backbone to configure. encode() still toggles
        # train/eval on self.model, so an empty module stands in for it.
        self.session = session
        self.tokenizer = tokenizer
        self.config = config
        self.model = torch.nn.Module()
        self.padding_side = "right"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self._takes_position_ids = False  # positions are computed inside the graph

    @classmethod
    def from_pretrained(cls, folder, *, threads: int | None = None, **overrides) -> "OnnxEncoder":
        ort = _require("onnxruntime", "ONNX inference")
        from .loading import load_tokenizer

        folder = Path(folder)
        if not (folder / ONNX_FILE).is_file():
            raise Decoder2VecError(f"{folder} has no {ONNX_FILE}; create it with "
                                   f"`decoder2vec export {folder} --to onnx OUT`")
        config = EncoderConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text()))
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        return cls(session, load_tokenizer(folder), config)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def is_bidirectional(self) -> bool:
        return self.config.bidirectional  # fixed when the graph was traced

    def info(self) -> dict:
        return {"backend": "onnxruntime", "dimension": self.config.dimension, "pooling": self.config.pooling,
                "max_length": self.config.max_length, "bidirectional": self.config.bidirectional,
                "instruction_template": self.config.instruction_template,
                "stages": [s.get("stage") for s in self.config.stages]}

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        (states,) = self.session.run(None, {"input_ids": batch.input_ids.numpy(),
                                            "attention_mask": batch.attention_mask.numpy()})
        return torch.from_numpy(states)

    def save_pretrained(self, path):
        raise Decoder2VecError("an OnnxEncoder cannot be saved; save the torch Encoder it was exported from")
