"""Which vector lengths a folder was trained for, read from its training history (the stage
records in decoder2vec_config.json, whose hyperparameters hold `matryoshka_dims`).

The last stage that trained the pooled vector (simcse, supervised, distill) decides: its
matryoshka_dims, or the full dimension alone when it had none. Merges and MNTP do not change it.
A folder with no such stage (a base model) was trained for its full dimension only.
"""

from __future__ import annotations

EMBEDDING_STAGES = ("simcse", "supervised", "distill")


def trained_dims(config) -> list[int]:
    """The prefix lengths `config` (an EncoderConfig) was trained for, ascending."""
    full = [config.dimension] if config.dimension else []
    for record in reversed(config.stages or []):
        if record.get("stage") in EMBEDDING_STAGES:
            dims = (record.get("hyperparameters") or {}).get("matryoshka_dims") or []
            return sorted({int(d) for d in dims} | set(full)) if dims else full
    return full


def untrained_dim_warning(config, dim: int | None, name: str = "truncate_dim") -> str | None:
    """The warning for encode(truncate_dim=dim) when `dim` is not a trained length, else None.
    `name`: what the caller calls the length (the server's `dimensions`)."""
    if dim is None or not config.dimension or dim == config.dimension:
        return None
    dims = trained_dims(config)
    if dim in dims:
        return None
    if dims == [config.dimension]:
        return (f"{name}={dim}: this model was not trained with Matryoshka dimensions, so a {dim}-dim prefix "
                "may lose much more quality than a trained one (train with matryoshka_dims)")
    return (f"{name}={dim} is not one of the Matryoshka dimensions this model was trained for "
            f"({', '.join(map(str, dims))}); a trained size keeps more quality")
