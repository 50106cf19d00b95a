"""Weight merging: the linear average of compatible models, written as an Encoder folder.

Small embedding models average checkpoints (EmbeddingGemma: several seeds of one stage) or a
trained stage with its base (BidirLM: the MNTP model 50/50 with the base, to undo forgetting).
Sources are anything `Encoder.from_pretrained` loads (Encoder folders, model folders, hub ids,
.gguf files, packaged names); they must have the same architecture, tensor names and shapes, and
the same tokenizer vocabulary. A trained latent-attention layer (latent_attention.safetensors) is
averaged with the same weights when every source has one of the same sizes; a merge where only
some have it, or where the sizes differ, is refused (a layer kept from one source would not fit
the averaged weights).

Weights are a convex combination: each in [0, 1], summing to 1. They are not normalised for the
user, because `--weights 0.7 0.7` is more likely a typo than a request for 0.5/0.5; the error
says which values would be meant. None means equal weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from ..atomic import check_output_folder
from ..encoder import Encoder
from ..errors import Decoder2VecError
from ..folder.latent_attention import load_latent_attention
from ..model.pooling import LatentAttention

WEIGHT_SUM_TOLERANCE = 1e-6


def check_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """The weights to use for `n` models: equal ones for None; otherwise a one-line error unless
    there is one per model, each in [0, 1], summing to 1."""
    if n < 2:
        raise Decoder2VecError(f"merge needs at least two models, got {n}")
    if weights is None:
        return [1.0 / n] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise Decoder2VecError(f"merge got {len(weights)} weights for {n} models; give one weight per model")
    for i, w in enumerate(weights):
        if not 0.0 <= w <= 1.0:
            raise Decoder2VecError(f"merge weight {i + 1} is {w}; each weight must be in [0, 1]")
    total = sum(weights)
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        meant = " ".join(f"{w / total:.6g}" for w in weights) if total > 0 else "equal weights"
        raise Decoder2VecError(f"merge weights must sum to 1, got {total:.6g} ({' '.join(map(str, weights))}); "
                               f"did you mean {meant}?")
    return weights


def _name(source) -> str:
    """What the merge record calls a source: an absolute path for a local one, else its name."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else str(source)


def check_compatible(first: Encoder, other: Encoder, first_name: str, other_name: str) -> None:
    """One-line error naming what differs first: the family, a tensor name or shape, the vocabulary."""
    a, b = first._backbone().config.model_type, other._backbone().config.model_type
    if a != b:
        raise Decoder2VecError(f"cannot merge {other_name} ({b}) into {first_name} ({a}): different architectures")
    mine, theirs = first._backbone().state_dict(), other._backbone().state_dict()
    for key, tensor in mine.items():
        if key not in theirs:
            raise Decoder2VecError(f"cannot merge: tensor {key!r} of {first_name} is missing in {other_name}")
        if tuple(tensor.shape) != tuple(theirs[key].shape):
            raise Decoder2VecError(f"cannot merge: tensor {key!r} is {tuple(tensor.shape)} in {first_name} "
                                   f"but {tuple(theirs[key].shape)} in {other_name}")
    extra = next((key for key in theirs if key not in mine), None)
    if extra is not None:
        raise Decoder2VecError(f"cannot merge: tensor {extra!r} of {other_name} is missing in {first_name}")
    if first.tokenizer.get_vocab() != other.tokenizer.get_vocab():
        raise Decoder2VecError(f"cannot merge: {first_name} and {other_name} have different tokenizer vocabularies")


def merge(
    folders: Sequence[str | os.PathLike],
    weights: Sequence[float] | None = None,
    *,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
) -> Path:
    """Write the weighted average of `folders`' weights to `output_dir` as an Encoder folder.

    The first model decides everything but the weights: tokenizer, pooling, instruction template,
    max length, and the training history, to which a record
    {"stage": "merge", "sources": [...], "weights": [...]} is appended. Floating-point tensors are
    averaged in float32 and stored in the first model's dtype; integer buffers must be equal.
    Models are loaded one at a time, so memory holds two models, not all of them.
    """
    folders = list(folders)
    weights = check_weights(weights, len(folders))
    names = [_name(f) for f in folders]
    # Refused before any (slow) load: the output may not be, or hold, any of the sources.
    check_output_folder(output_dir, kind="encoder", overwrite=overwrite,
                        sources=[Path(n) for n in names if Path(n).is_dir()])
    layer = merged_latent_attention(folders, names, weights)  # refused, if at all, before the slow loads
    first = Encoder.from_pretrained(folders[0])
    average_into(first, names[0], list(zip(folders[1:], names[1:], weights[1:])), weights[0])
    first.latent_attention = layer
    first.config.stages = [*first.config.stages, {"stage": "merge", "sources": names, "weights": weights}]
    return first.save_pretrained(output_dir, overwrite=overwrite)


def merged_latent_attention(folders, names: Sequence[str], weights: Sequence[float]) -> LatentAttention | None:
    """The weighted average of the sources' latent-attention layers; None when none has one."""
    layers = [load_latent_attention(f) if Path(f).expanduser().is_dir() else None for f in folders]
    if all(layer is None for layer in layers):
        return None
    if any(layer is None for layer in layers):
        have = [n for n, layer in zip(names, layers) if layer is not None]
        lack = [n for n, layer in zip(names, layers) if layer is None]
        raise Decoder2VecError(f"cannot merge: {', '.join(have)} has a trained latent-attention layer and "
                               f"{', '.join(lack)} has none; merge models that all have one, or none")
    sizes = [(layer.dim, layer.n_latents, layer.heads) for layer in layers]
    for name, size in zip(names[1:], sizes[1:]):
        if size != sizes[0]:
            raise Decoder2VecError(f"cannot merge: the latent-attention layer of {name} is (dim, latents, heads) = "
                                   f"{size}, of {names[0]} {sizes[0]}; only layers of the same sizes average")
    states = [layer.state_dict() for layer in layers]
    layers[0].load_state_dict({key: sum(w * s[key].float() for w, s in zip(weights, states)) for key in states[0]})
    return layers[0]


def average_into(first: Encoder, first_name: str, others: Sequence[tuple], first_weight: float) -> None:
    """Replace `first`'s weights by first_weight * its own + the sum of weight * each other model's,
    others being (source, name, weight); each is loaded, checked compatible and dropped in turn."""
    state = first._backbone().state_dict()
    total = {key: t.float() * first_weight if t.is_floating_point() else t.clone() for key, t in state.items()}
    for folder, name, weight in others:
        other = Encoder.from_pretrained(folder)
        check_compatible(first, other, first_name, name)
        for key, tensor in other._backbone().state_dict().items():
            if tensor.is_floating_point():
                total[key] += tensor.float().to(total[key].device) * weight
            elif not torch.equal(tensor.to(total[key].device), total[key]):
                raise Decoder2VecError(f"cannot merge: integer tensor {key!r} differs between {first_name} and {name}")
        del other
    first._backbone().load_state_dict({key: t.to(state[key].dtype) for key, t in total.items()})
