"""Matryoshka training (Kusupati et al. 2022) for any stage that trains the pooled vector: the
stage's loss is computed on each prefix of the vector listed in `matryoshka_dims` and summed
(weighted by `matryoshka_weights`). Every loss here normalises its vectors, so each prefix is
renormalised. The vectors are embedded once; only the loss is repeated.

A stage whose loss handles the prefixes itself sets `handles_matryoshka = True` (distill: its
projections depend on the prefix length). For the others the stage is wrapped:
- when it computes its loss from the batch's vectors in one method (`_loss_from_vectors`, the
  supervised stage: used by the plain and the cached GradCache loss alike), that method is called
  once per prefix;
- otherwise its `loss` runs once per prefix, the first run embedding the batch and the later ones
  reusing those vectors cut to the prefix (SimCSE).
"""

from __future__ import annotations

from ..errors import Decoder2VecError


def matryoshka_weights(config) -> list[float]:
    dims = config.matryoshka_dims or [None]
    return [float(w) for w in config.matryoshka_weights] if config.matryoshka_weights else [1.0] * len(dims)


def check_dims(dims: list[int], dimension: int, stage: str) -> None:
    too_long = [d for d in dims if d > dimension]
    if too_long:
        raise Decoder2VecError(f"{stage}: matryoshka_dims {too_long} exceed the model's dimension {dimension}")


def apply_matryoshka(stage) -> None:
    """Make `stage` sum its loss over the configured prefixes (no-op without matryoshka_dims)."""
    config = stage.config
    dims = list(getattr(config, "matryoshka_dims", None) or [])
    if not dims or getattr(stage, "handles_matryoshka", False):
        return
    check_dims(dims, stage.encoder.dimension, config.stage)
    weights = matryoshka_weights(config)
    if hasattr(stage, "_loss_from_vectors"):
        inner = stage._loss_from_vectors

        def loss_from_vectors(vectors, inputs):
            total, first = 0.0, None
            for dim, weight in zip(dims, weights):
                value, candidates = inner(vectors[:, :dim], inputs)
                total, first = total + weight * value, candidates if first is None else first
            return total, first

        stage._loss_from_vectors = loss_from_vectors
        return

    inner_loss, inner_embed = stage.loss, stage.embed

    def loss(model, inputs):
        full: list = []  # every vector batch the first run embedded, in call order

        def embed_first(model, batch):
            vectors = inner_embed(model, batch)
            full.append(vectors)
            return vectors[:, :dims[0]]

        total, logs, per_dim = 0.0, {}, {}
        try:
            for k, (dim, weight) in enumerate(zip(dims, weights)):
                calls = iter(full)
                stage.embed = embed_first if k == 0 else (lambda model, batch, d=dim: next(calls)[:, :d])
                value, logs = inner_loss(model, inputs)
                total = total + weight * value
                per_dim[f"loss_dim_{dim}"] = round(float(value.detach()), 4)
        finally:
            stage.embed = inner_embed
        return total, {**logs, **per_dim}

    stage.loss = loss
