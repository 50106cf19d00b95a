"""int8 while loading: never hold the whole fp32 model.

`Encoder.from_pretrained(folder, quantize="int8")` on CPU builds the model with its weights on
the meta device (no memory), reads the small float tensors it keeps (embeddings, norms) from the
safetensors files, then runs the calibration texts through it once. Each Linear (or GPT-2
Conv1D) reads its fp32 weight from the file just before its forward, records the calibration
activations it sees, runs in fp32, and is replaced by its `Int8Linear` just after - its fp32
weight freed before the next layer reads its own. So at most one fp32 layer is held at a time.

The result is the same as loading in fp32 and calling `quantize_model`: every layer sees the
activations of fp32 layers before it (each layer runs in fp32 during calibration and is only
replaced afterwards), so the outlier channels and the int8 weights are the same. (A Linear
called twice in one forward would run int8 the second time; no supported family does that.)
The float tensors kept (embeddings, norms) are copy-on-write views of the file, as in
transformers' own fp32 load: their pages become resident as they are read.

Streams local folders of safetensors (Encoder folders, transformers folders, and the safetensors
copy loading.py keeps of a GGUF file). Anything else - a hub id, a checkpoint whose tensor names
are not the model's own (transformers renames legacy names while loading), a GPU, bf16 - loads
in full and is quantised afterwards (quantization.quantize_model).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open

from ..errors import Decoder2VecError
from .loading import default_device, parse_dtype
from .quantization import (
    _encoder_calibration, _is_linear, _release_freed_memory, record_input_peak, replace_with_int8, trim_heap,
)


def streams(source: str, quantize: str | None, device: str | None, dtype) -> bool:
    """Whether `source` can be quantised while loading: int8 of a local safetensors folder, on
    CPU, in fp32 (the dtype the full load quantises from there)."""
    device = torch.device(device or default_device())
    return (quantize == "int8" and device.type == "cpu" and parse_dtype(dtype) in (None, torch.float32)
            and Path(source).is_dir() and any(Path(source).glob("*.safetensors")))


def fits(model: nn.Module, source: str) -> bool:
    """Whether the checkpoint names every parameter of `model` by the model's own names."""
    return checkpoint_names(model, tensor_files(source)) is not None


def tensor_files(folder: str) -> dict[str, Path]:
    """Tensor name -> the safetensors file that holds it (headers only; sharded checkpoints too)."""
    where = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            where.update(dict.fromkeys(f.keys(), file))
    return where


def checkpoint_names(model: nn.Module, where: dict[str, Path]) -> dict[str, str] | None:
    """Model tensor name -> checkpoint tensor name for every parameter and persistent buffer the
    checkpoint has (a backbone's names may carry its `base_model_prefix` there); None if a
    parameter has no tensor of its own name (legacy names: only transformers' loader maps them)."""
    prefix = getattr(model, "base_model_prefix", "")
    names = {}
    for name in model.state_dict(keep_vars=True):
        for candidate in (name, f"{prefix}.{name}", name.removeprefix(f"{prefix}.")):
            if candidate in where:
                names[name] = candidate
                break
    for group in _tied_groups(model).values():  # tied parameters: one of their names will do
        if not any(name in names for name in group):
            return None
    return names


def _tied_groups(model: nn.Module) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return groups


def _read(where: dict[str, Path], key: str) -> torch.Tensor:
    # The tensor is a copy-on-write view of a file mapping that lives as long as the tensor: a
    # layer's freed fp32 weight takes its resident pages with it (a bf16 file is widened: a copy).
    with safe_open(str(where[key]), framework="pt") as f:
        tensor = f.get_tensor(key)
    return tensor.float() if tensor.is_floating_point() else tensor  # fp32, as the full load's dtype


class _Reader:
    """Sets a model's meta tensors from the checkpoint, by name, keeping tied parameters tied."""

    def __init__(self, model: nn.Module, where: dict[str, Path], names: dict[str, str]):
        self.model, self.where, self.names = model, where, names
        self.groups = _tied_groups(model)

    def parameter(self, module: nn.Module, attr: str) -> None:
        old = module._parameters[attr]
        if old is None or not old.is_meta:
            return
        group = self.groups[id(old)]
        key = next(self.names[n] for n in group if n in self.names)
        new = nn.Parameter(_read(self.where, key), requires_grad=old.requires_grad)
        for name in group:
            owner_name, _, leaf = name.rpartition(".")
            owner = self.model.get_submodule(owner_name) if owner_name else self.model
            owner._parameters[leaf] = new

    def module(self, module: nn.Module) -> None:
        for attr in list(module._parameters):
            self.parameter(module, attr)


def load_quantized(encoder, source: str) -> None:
    """Fill an Encoder whose backbone was built on the meta device (loading.load_model(empty=True))
    from `source` (see `fits`), quantising each Linear as the calibration texts reach it."""
    model = encoder.model
    where = tensor_files(source)
    names = checkpoint_names(model, where)
    if names is None:
        raise Decoder2VecError(f"{source}: the checkpoint does not name every weight of the model; load it in full")
    reader = _Reader(model, where, names)
    targets = {module: name for name, module in model.named_modules() if _is_linear(module)}
    # Everything that stays float (embeddings, norms) is read now; only the linears stream.
    for module in model.modules():
        if module not in targets:
            reader.module(module)
    for name, buffer in model.named_buffers():
        if name in names and not buffer.is_meta:
            buffer.data = _read(where, names[name]).to(buffer.dtype)
    peaks: dict[nn.Module, torch.Tensor] = {}

    def before(module, args):
        reader.module(module)
        record_input_peak(peaks, module, args)

    def after(module, args, output):
        _replace(model, targets[module], module, peaks.get(module))

    handles = [h for m in targets for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    try:
        with torch.no_grad():  # not inference_mode: the int8 buffers made here must work with autograd on
            _encoder_calibration(encoder)()
    finally:
        for handle in handles:
            handle.remove()
    for module, name in targets.items():  # layers the calibration never reached: no float channels
        if model.get_submodule(name) is module:
            reader.module(module)
            _replace(model, name, module, None)
    _release_freed_memory()


def _replace(model: nn.Module, name: str, module: nn.Module, peak: torch.Tensor | None) -> None:
    """The same Int8Linear quantize_model makes from this layer and its calibration peak."""
    replace_with_int8(model, name, module, peak)
    # The fp32 weight and quantising's fp32 temporaries go back to the OS now: glibc would keep
    # them in its heap, and the heap would grow to the whole fp32 model by the last layer.
    trim_heap()
