"""Per-call Encoder settings for evaluation: a token limit for long inputs, an instruction template
for the LLM2Vec chat format.

`Encoder.encode` takes neither per call, so they are set on the encoder's config for one call and
put back afterwards, here only, in the two places that call a model (adapter.py, mteb_adapter.py).
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def encoder_settings(encoder, **values):
    """Set `values` on `encoder.config` (fields it has; others are left alone) for the block."""
    config = getattr(encoder, "config", None)
    changed = {key: getattr(config, key) for key, value in values.items()
               if value is not None and hasattr(config, key) and getattr(config, key) != value}
    for key in changed:
        setattr(config, key, values[key])
    try:
        yield
    finally:
        for key, value in changed.items():
            setattr(config, key, value)
