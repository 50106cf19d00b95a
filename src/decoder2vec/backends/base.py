"""The one interface every backend implements."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import Decoder2VecError


def pad(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask) int64 tensors."""
    n, width = len(ids), max(len(x) for x in ids)
    input_ids = np.full((n, width), pad_id, dtype=np.int64)
    attention = np.zeros((n, width), dtype=np.int64)
    for row, x in enumerate(ids):
        input_ids[row, :len(x)] = x
        attention[row, :len(x)] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(attention)


def forward_batches(ids: Sequence[Sequence[int]], pad_id: int, max_tokens: int):
    """Padded (input_ids, attention_mask) pieces of a batch, in order, each at most max_tokens
    padded tokens (at least one row), each padded to its own longest text."""
    rows = max(1, max_tokens // max(len(x) for x in ids))
    for start in range(0, len(ids), rows):
        yield pad(ids[start:start + rows], pad_id)


def same_length_batches(ids: Sequence[Sequence[int]], max_tokens: int):
    """Row indices of `ids` in groups of one length each (at most max_tokens tokens, at least one row)."""
    by_length: dict[int, list[int]] = {}
    for row, x in enumerate(ids):
        by_length.setdefault(len(x), []).append(row)
    for length, rows in by_length.items():
        step = max(1, max_tokens // length)
        for start in range(0, len(rows), step):
            yield rows[start:start + step]


def unpadded_states(forward, ids: Sequence[Sequence[int]], pad_id: int, max_tokens: int):
    """Right-padded (states, attention_mask) from forward calls that each see texts of one length
    only: no forward ever has padding in it. Why: int8 activations round each value to one of 255
    steps, so a last-bit difference before the rounding (attention over 26 padded keys does not sum
    exactly like attention over the text's own 13) can move a value a whole step, and a model
    amplifies that step layer by layer (SmolLM2 int8: 4e-2 between a text alone and in a padded
    batch). Without padding a text's forward is the same computation alone or batched."""
    _, attention = pad(ids, pad_id)
    states = None
    for rows in same_length_batches(ids, max_tokens):
        input_ids, mask = pad([ids[r] for r in rows], pad_id)
        out = forward(input_ids, mask)
        if states is None:
            states = out.new_zeros(len(ids), attention.shape[1], out.shape[-1])
        states[rows, :out.shape[1]] = out
    return states, attention.to(states.device)


class Backend:
    """forward(input_ids, attention_mask) -> last hidden states (batch, length, hidden), right padded.

    `states(ids)` is what Encoder.encode calls: token id lists in, (states, attention_mask) out in
    the right-padded layout, so pooling is the same code for every backend. A backend may run the
    texts differently (torch packs them with no padding on flash-attention GPUs) as long as it
    returns that layout."""

    name = "?"
    weights = "float32"  # or "int8": what the matmuls run in
    # One forward call covers at most this many padded tokens; a larger batch runs as several
    # calls, each padded to its own longest text. The exported engines allocate a forward's
    # intermediates at once (attention scores alone are rows x heads x length^2 floats: 184 MB
    # for 32 rows of 400 tokens on SmolLM2), so this bounds their peak memory, and the narrower
    # sub-batches carry less padding. Vectors do not depend on it (a text's vector does not
    # depend on its batch).
    max_forward_tokens = 4096
    # True: forward texts of one length together only (int8 activations: see unpadded_states).
    unpadded = False

    def __init__(self, config, pad_id: int):
        self.config = config  # the transformers config (hidden size, family, positions)
        self.pad_id = pad_id

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def states(self, ids: Sequence[Sequence[int]], packed: bool | None = None):
        if packed:
            raise Decoder2VecError(f"packed (unpadded) batches run on the torch backend only, not {self.name!r}")
        if self.unpadded:
            return unpadded_states(self.forward, ids, self.pad_id, self.max_forward_tokens)
        _, attention = pad(ids, self.pad_id)
        width = attention.shape[1]
        parts = []
        for input_ids, mask in forward_batches(ids, self.pad_id, self.max_forward_tokens):
            states = self.forward(input_ids, mask)
            parts.append(torch.nn.functional.pad(states, (0, 0, 0, width - states.shape[1])))
        return torch.cat(parts) if len(parts) > 1 else parts[0], attention

    def info(self) -> dict:
        return {"backend": self.name, "weights": self.weights}
