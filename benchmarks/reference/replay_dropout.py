"""The same attention-dropout masks in decoder2vec and in llm2vec 0.2.3, for the SimCSE comparison.

Both implementations call torch.nn.functional.scaled_dot_product_attention with dropout_p while
training, but in different batches: decoder2vec runs both views in one forward of 2N rows,
llm2vec's run_simcse.py runs one forward per view of N rows. ReplayDropout replaces that function
(torch only, so it runs in either venv): with dropout_p > 0 it computes attention explicitly and
draws each row's dropout mask from a generator seeded by (view, text, layer), so a text's view 1
sees the same mask in layer k on both sides. Rows must not be padded (the benchmark picks
sentences of one token length). With dropout_p == 0 the original function runs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ORIGINAL = F.scaled_dot_product_attention


class ReplayDropout:
    """`views_in_rows`: True when one forward holds both views (rows [view 0 texts, view 1 texts],
    decoder2vec), False when each forward is one view (llm2vec: the forward's number is the view)."""

    def __init__(self, texts: int, layers: int, views_in_rows: bool, seed: int = 0):
        self.texts, self.layers, self.views_in_rows, self.seed = texts, layers, views_in_rows, seed
        self.calls = 0  # attention calls with dropout (the benchmark checks both sides made the same number)

    def __enter__(self):
        torch.nn.functional.scaled_dot_product_attention = self
        return self

    def __exit__(self, *exc):
        torch.nn.functional.scaled_dot_product_attention = ORIGINAL

    def mask(self, view: int, text: int, layer: int, shape, p: float) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + (view * 10_007 + text) * 101 + layer)
        return (torch.rand(shape, generator=generator) >= p).double() / (1.0 - p)

    def __call__(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                 enable_gqa=False, **kwargs):
        if not dropout_p:
            return ORIGINAL(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, enable_gqa=enable_gqa, **kwargs)
        layer, forward = self.calls % self.layers, self.calls // self.layers
        self.calls += 1
        rows, heads, length = query.shape[0], query.shape[1], query.shape[2]
        if key.shape[1] != heads:  # grouped-query attention passed unexpanded (enable_gqa)
            key = key.repeat_interleave(heads // key.shape[1], dim=1)
            value = value.repeat_interleave(heads // value.shape[1], dim=1)
        # At least float32 (bf16 attention would round the replayed probabilities); float64 stays
        # float64 (the benchmark's gradient comparison runs both models in float64).
        dtype = torch.promote_types(query.dtype, torch.float32)
        scores = (query.to(dtype) @ key.to(dtype).transpose(-1, -2)) * (scale or 1.0 / math.sqrt(query.shape[-1]))
        if is_causal:
            scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
                else scores + attn_mask.to(dtype)
        probs = scores.softmax(-1)
        expected = 2 * self.texts if self.views_in_rows else self.texts
        if rows != expected:
            raise ValueError(f"ReplayDropout: {rows} rows in a forward, expected {expected}")
        masks = torch.stack([
            self.mask(row // self.texts if self.views_in_rows else forward, row % self.texts, layer,
                      (heads, length, key.shape[2]), dropout_p)
            for row in range(rows)])
        return ((probs * masks.to(dtype)) @ value.to(dtype)).to(value.dtype)
