"""The one model label: what results files, tables and the vector cache call a model."""

from __future__ import annotations


def model_label(model) -> str:
    """A readable label for any model evaluate() accepts.

    A decoder2vec Encoder: "<base model> (<pooling>, bidirectional|causal[, <stages>])". A
    sentence-transformers model: the name it was loaded by (set by `load_encoder`), else its
    base model or path. Anything else: its class name.
    """
    name = getattr(model, "decoder2vec_name", None)
    if name:
        return str(name)
    config = getattr(model, "config", None)
    base = getattr(config, "base_model", None)
    if base is not None:
        extra = f"{config.pooling}, {'bidirectional' if config.bidirectional else 'causal'}"
        stages = [s.get("stage") for s in getattr(config, "stages", []) if isinstance(s, dict)]
        if stages:
            extra += ", " + "+".join(map(str, stages))
        return f"{base} ({extra})"
    for attr in ("model_card_data", "_model_card_vars"):
        card = getattr(model, attr, None)
        card_base = getattr(card, "base_model", None) if card is not None else None
        if card_base:
            return str(card_base)
    path = getattr(getattr(model, "model", None), "name_or_path", None)
    return str(path) if path else type(model).__name__
