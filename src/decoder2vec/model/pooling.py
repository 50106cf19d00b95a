"""Pooling: token states (batch, seq, dim) + a mask of the tokens to pool -> one vector per text.

`mask` marks the text's own tokens (no padding, no instruction, no special tokens);
`attention_mask` marks every real token. Each pooling is one tensor op, no Python loop per row.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import Decoder2VecError, choices_error

POOLINGS = ("mean", "weighted_mean", "last_token", "first_token")


def _masked_mean(states, weights):
    weights = weights.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def mean(states, mask, attention_mask):
    return _masked_mean(states, mask)


def weighted_mean(states, mask, attention_mask):
    # Later tokens have seen more of the text (SGPT); weights 1..n over the pooled tokens,
    # counted from the text's first token whatever the padding side.
    weights = torch.cumsum(mask, dim=1) * mask
    return _masked_mean(states, weights)


def last_token(states, mask, attention_mask):
    # Index of the last real token: works for left and right padding alike.
    positions = torch.arange(attention_mask.shape[1], device=states.device)
    last = (attention_mask * positions).argmax(dim=1)
    return states[torch.arange(states.shape[0], device=states.device), last]


def first_token(states, mask, attention_mask):
    first = attention_mask.int().argmax(dim=1)
    return states[torch.arange(states.shape[0], device=states.device), first]


def pool(states: torch.Tensor, mask: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pooled in float32 whatever the model's dtype: a bf16 sum over hundreds of tokens loses
    digits. A row with no token to pool is an error, never a zero vector."""
    check_pooling(pooling)
    empty = (mask.sum(1) == 0).nonzero()
    if len(empty):
        raise Decoder2VecError(f"row {int(empty[0])} of the batch has no text token to pool (an empty text, or an "
                               "instruction that fills max_length)")
    return globals()[pooling](states.float(), mask, attention_mask)


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise choices_error("pooling", pooling, POOLINGS)
    return pooling


# ---------------------------------------------------------------- trainable latent-attention pooling


class LatentAttention(nn.Module):
    """NV-Embed's latent-attention layer (Lee et al. 2024): the token states are queries of a
    cross-attention whose keys and values come from a trainable latent array (latents x dim),
    followed by an MLP, each with a residual; the result is pooled as usual (NV-Embed: mean).
    The output projections start at zero, so an untrained layer is the identity: training starts
    from the pooling the model had. (NV-Embed's MLP is a GEGLU; a GELU MLP of 4 x dim here.)"""

    def __init__(self, dim: int, latents: int = 512, heads: int = 8):
        super().__init__()
        if dim % heads:
            raise Decoder2VecError(f"latent_attention_heads={heads} must divide the model's dimension {dim}")
        self.dim, self.heads, self.n_latents = dim, heads, latents
        self.latents = nn.Parameter(torch.randn(latents, dim) * dim ** -0.5)
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        for layer in (self.to_out, self.mlp[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        batch, length, dim = states.shape
        heads = self.heads
        q = self.to_q(self.norm(states)).view(batch, length, heads, dim // heads).transpose(1, 2)
        k, v = self.to_kv(self.latents).chunk(2, dim=-1)
        k = k.view(1, -1, heads, dim // heads).transpose(1, 2)
        v = v.view(1, -1, heads, dim // heads).transpose(1, 2)
        # Every token attends to the latents only (never to other tokens), so padding needs no mask.
        out = nn.functional.scaled_dot_product_attention(q, k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1))
        states = states + self.to_out(out.transpose(1, 2).reshape(batch, length, dim))
        return states + self.mlp(states)

    def settings(self) -> dict[str, str]:
        return {"dim": str(self.dim), "latents": str(self.n_latents), "heads": str(self.heads)}


def latent_attention_pool(module: LatentAttention, states: torch.Tensor, mask: torch.Tensor,
                          attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """The latent-attention layer over the token states (float32), then `pooling` as `pool` does."""
    return pool(module.to(states.device)(states.float()), mask, attention_mask, pooling)
