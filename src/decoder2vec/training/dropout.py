"""Training-time dropout for SimCSE: attention dropout through the config/attention modules, and
hidden-state dropout after every decoder layer for families that have none (Llama, Qwen, ...)."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..bidirectional import _configs
from .lora import decoder_layers


def set_dropout(model: nn.Module, *, attention: float, hidden: float) -> callable:
    """Set dropout in place; returns a function that restores the model as it was (so the saved
    config and the inference model carry no training dropout)."""
    undo = []
    for cfg in _configs(model.config):
        if hasattr(cfg, "attention_dropout"):
            undo.append((cfg, "attention_dropout", cfg.attention_dropout))
            cfg.attention_dropout = attention
    for module in model.modules():
        # Llama-style attention reads self.attention_dropout at every forward.
        if isinstance(getattr(module, "attention_dropout", None), float):
            undo.append((module, "attention_dropout", module.attention_dropout))
            module.attention_dropout = attention
    layers = decoder_layers(model)
    dropouts = [(name, m) for name, m in layers.named_modules() if isinstance(m, nn.Dropout)]
    for name, module in dropouts:
        undo.append((module, "p", module.p))
        module.p = attention if "attn" in name or "attention" in name else hidden
    hooks = []
    if hidden > 0 and not any("attn" not in n and "attention" not in n for n, _ in dropouts):
        hooks = [layer.register_forward_hook(_hidden_dropout(hidden)) for layer in layers]

    def restore():
        for obj, attr, value in undo:
            setattr(obj, attr, value)
        for hook in hooks:
            hook.remove()

    return restore


def _hidden_dropout(p: float):
    def hook(module, args, output):
        if not module.training:
            return output
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, True), *output[1:])
        return F.dropout(output, p, True)

    return hook
