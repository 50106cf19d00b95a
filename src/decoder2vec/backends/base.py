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


class Backend:
    """forward(input_ids, attention_mask) -> last hidden states (batch, length, hidden), right padded.

    `states(ids)` is what Encoder.encode calls: token id lists in, (states, attention_mask) out in
    the right-padded layout, so pooling is the same code for every backend. A backend may run the
    texts differently (torch packs them with no padding on flash-attention GPUs) as long as it
    returns that layout."""

    name = "?"
    weights = "float32"  # or "int8": what the matmuls run in

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
        input_ids, attention = pad(ids, self.pad_id)
        return self.forward(input_ids, attention), attention

    def info(self) -> dict:
        return {"backend": self.name, "weights": self.weights}
