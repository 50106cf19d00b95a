"""Bidirectional attention for any decoder, with no per-architecture model classes.

transformers >= 5.2 builds a bidirectional (padding-only) mask when `config.is_causal` is False,
and SDPA/flash kernels take their causal fast path only when the attention module's own
`is_causal` flag is True. Flipping both is all it takes; `QUIRKS` holds the few families
that need something more.
"""

from __future__ import annotations

import torch.nn as nn

# model_type -> what that family needs beyond the two flags.
QUIRKS: dict[str, dict] = {
    # Gemma-2's attention-logit soft-capping exists only in the eager kernel.
    "gemma2": {"attn_implementation": "eager"},
}


def _configs(config):
    """The config and its sub-configs (multimodal wrappers keep the decoder in text_config)."""
    yield config
    for name in ("text_config", "decoder"):
        sub = getattr(config, name, None)
        if sub is not None and hasattr(sub, "to_dict"):
            yield sub


def quirks_for(config) -> dict:
    for cfg in _configs(config):
        if getattr(cfg, "model_type", None) in QUIRKS:
            return QUIRKS[cfg.model_type]
    return {}


def _attention_modules(model: nn.Module):
    for module in model.modules():
        if module is not model and isinstance(getattr(module, "is_causal", None), bool):
            yield module


def set_causal(model: nn.Module, causal: bool) -> nn.Module:
    """Set causal (True) or bidirectional (False) attention in place; returns the model."""
    for cfg in _configs(model.config):
        cfg.is_causal = causal
        # Gemma's own flag stays off either way: `is_causal` already gives the bidirectional mask,
        # while Gemma-3's flag adds an or-mask that always materialises a (length x length) mask
        # through vmap, even with no padding, where `is_causal=False` alone lets SDPA run mask-free.
        # With `is_causal=False`, Gemma-3's sliding layers attend to |i - j| <= sliding_window
        # (transformers' bidirectional sliding mask): the local window becomes two-sided.
        if getattr(cfg, "use_bidirectional_attention", None):
            cfg.use_bidirectional_attention = False
    for module in _attention_modules(model):
        module.is_causal = causal
    return model


def make_bidirectional(model: nn.Module) -> nn.Module:
    """Let every token attend to every other (non-pad) token. In place; returns the model."""
    return set_causal(model, False)


def make_causal(model: nn.Module) -> nn.Module:
    return set_causal(model, True)


def is_bidirectional(model: nn.Module) -> bool:
    if getattr(model.config, "is_causal", True):
        return False
    return not any(m.is_causal for m in _attention_modules(model))
