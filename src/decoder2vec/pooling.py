"""Pooling: token states (batch, seq, dim) + a mask of the tokens to pool -> one vector per text.

`mask` marks the text's own tokens (no padding, no instruction, no special tokens);
`attention_mask` marks every real token. Each pooling is one tensor op, no Python loop per row.
"""

from __future__ import annotations

import torch

from .errors import Decoder2VecError, choices_error

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
