"""Training-time dropout for SimCSE: attention dropout through the config/attention modules, and
hidden dropout on each attention/MLP block's output for families that have none (Llama, Qwen, ...).

The hidden dropout goes where BERT (and so SimCSE) has it: on a sublayer's output, before it is
added to the residual stream. Dropping coordinates of the residual stream itself (a hook on the
whole decoder layer) zeroes the few huge "massive activation" dimensions LLMs rely on and wrecks
the representation: SimCSE's loss then sits above ln(batch), i.e. worse than chance.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..model.bidirectional import _configs
from ..errors import Decoder2VecError
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
    # Some families (OPT) keep their dropout rates as float attributes and call F.dropout.
    rates = [(name, m) for name, m in layers.named_modules() if isinstance(getattr(m, "dropout", None), float)]
    for name, module in rates:
        undo.append((module, "dropout", module.dropout))
        module.dropout = attention if "attn" in name or "attention" in name else hidden
    has_hidden = any("attn" not in n and "attention" not in n for n, _ in dropouts + rates)
    hooks = []
    if hidden > 0 and not has_hidden:
        hooks = [block.register_forward_hook(_hidden_dropout(hidden)) for block in sublayers(layers)]

    def restore():
        for obj, attr, value in undo:
            setattr(obj, attr, value)
        for hook in hooks:
            hook.remove()

    return restore


# The attention and MLP blocks of a decoder layer, by the names the families use for them.
SUBLAYER_NAMES = ("self_attn", "attn", "attention", "self_attention", "mlp", "feed_forward")


def sublayers(layers: nn.ModuleList) -> list[nn.Module]:
    """Each decoder layer's attention and MLP blocks (their outputs are added to the residual)."""
    found = [getattr(layer, name) for layer in layers for name in SUBLAYER_NAMES
             if isinstance(getattr(layer, name, None), nn.Module)]
    if len(found) < 2 * len(layers):
        raise Decoder2VecError(f"hidden_dropout: cannot find the attention and MLP blocks of "
                               f"{type(layers[0]).__name__}; set hidden_dropout: 0")
    return found


def _hidden_dropout(p: float):
    def hook(module, args, output):
        if not module.training:
            return output
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, True), *output[1:])
        return F.dropout(output, p, True)

    return hook
