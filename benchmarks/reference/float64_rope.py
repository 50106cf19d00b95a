"""Rotary position angles in float64, for the float64 gradient comparison of reference_training.py.

transformers (4.44 in the reference venv and 5 in decoder2vec's) computes the RoPE angles
position x inv_freq in float32 whatever the model's dtype, and llm2vec left-pads (positions of a
padded text start at its pad count) where decoder2vec right-pads (they start at 0). The attention
scores depend only on the distance of two positions, exactly, but the float32 angles are rounded
differently at different absolute positions: ~1e-6 in the hidden states, up to ~1e-4 in a LoRA
gradient of SmolLM2's 30 layers, a difference the float64 run is there to remove. Float64RoPE
replaces the forward of every rotary embedding module of a model with one that computes the angles
in float64 from the same inv_freq values (float32-rounded at init, as both versions make them).
torch only, so it runs in either venv; the float32 run never uses it.
"""

from __future__ import annotations

import torch


def _forward(module):
    def forward(x, position_ids=None, seq_len=None, **kwargs):
        inv_freq = module.inv_freq.to(device=x.device, dtype=torch.float64)
        if isinstance(position_ids, torch.Tensor):  # forward(x, position_ids): cos/sin per position
            positions = position_ids.to(torch.float64)
        else:  # 4.44's Qwen2: forward(x, seq_len) -> the cached table's first seq_len rows
            positions = torch.arange(seq_len if seq_len is not None else position_ids, dtype=torch.float64,
                                     device=x.device)
        freqs = positions[..., None] * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        scale = getattr(module, "attention_scaling", 1.0)
        module.float64_calls += 1
        return (emb.cos() * scale).to(x.dtype), (emb.sin() * scale).to(x.dtype)
    return forward


def float64_rope(model) -> int:
    """Patch every *RotaryEmbedding module of `model` (in place); returns how many. A model whose
    rope type is not the default (rope_scaling set) is refused: the angles would not be these."""
    patched = 0
    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding") and hasattr(module, "inv_freq"):
            rope_type = getattr(module, "rope_type", "default")
            if rope_type not in ("default", None):
                raise SystemExit(f"float64_rope: {type(module).__name__} has rope type {rope_type!r}, not default")
            module.float64_calls = 0
            module.forward = _forward(module)
            patched += 1
    return patched


def float64_calls(model) -> int:
    """How many times the patched rotary embeddings of `model` ran (0: the patch did not take)."""
    return sum(getattr(m, "float64_calls", 0) for m in model.modules())
