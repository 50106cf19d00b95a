"""LoRA for any decoder: find the projections generically, add an adapter, merge it back."""

from __future__ import annotations

import torch.nn as nn
from peft import LoraConfig, get_peft_model

from ..errors import Decoder2VecError


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of decoder layers: the longest nn.ModuleList in the model (every family has one)."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise Decoder2VecError(f"cannot find the decoder layers of {type(model).__name__}")
    return max(lists, key=len)


def _adaptable(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    # GPT-2 style models use transformers' Conv1D (a transposed linear); peft adapts it too.
    return type(module).__name__ == "Conv1D"


def default_target_modules(model: nn.Module) -> list[str]:
    """Leaf names of every linear layer inside the decoder layers: all attention and MLP
    projections (q_proj, k_proj, ..., or c_attn, c_fc, ... for GPT-2); never the LM head."""
    names = set()
    for name, module in decoder_layers(model).named_modules():
        if _adaptable(module):
            names.add(name.rsplit(".", 1)[-1])
    if not names:
        raise Decoder2VecError(f"no linear layers found inside the decoder layers of {type(model).__name__}")
    return sorted(names)


def add_lora(model: nn.Module, *, r: int, alpha: float, dropout: float, target_modules=None,
             trainable_token_indices: list[int] | None = None):
    """Wrap `model` in a fresh peft LoRA adapter (base weights frozen)."""
    targets = list(target_modules) if target_modules else default_target_modules(model)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise Decoder2VecError(
            f"lora_target_modules {missing} not found in the model; it has e.g. {', '.join(default_target_modules(model))}"
        )
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
        trainable_token_indices=trainable_token_indices or None,
    )
    return get_peft_model(model, config)


def merge_lora(peft_model) -> nn.Module:
    """Fold the adapter into the base weights; returns the plain transformers model."""
    return peft_model.merge_and_unload()


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
