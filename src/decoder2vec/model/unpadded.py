"""Unpadded (varlen) batches: the texts of a batch end to end in one row, no padding at all.

Padding costs compute in every linear layer; sorting by length (Encoder.encode) removes most of
it, packing removes all of it. The packed row carries position ids that restart at 0 for every
text, and attention must stay inside each text:

- flash-attention kernels (`attn_implementation="flash_attention_2"`/`"flash_attention_3"`, GPUs):
  transformers sees the restarting position ids with no attention mask and calls the varlen
  kernel with per-text boundaries (cu_seqlens) - attention costs sum(len_i^2), nothing more;
- any other implementation (SDPA, eager; CPU included): a block-diagonal 4-D mask keeps every
  token inside its text. Correct everywhere, but attention then costs (sum len_i)^2, so this is
  for testing the path on a CPU, not for speed there.

The states are then put back into the padded (texts, length, dim) layout, so pooling is the same
code (pooling.py) for both paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import Decoder2VecError

VARLEN_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3", "kernels-community/flash-attn",
                          "kernels-community/flash-attn3", "kernels-community/vllm-flash-attn3")


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # (1, total tokens)
    position_ids: torch.Tensor  # (1, total tokens), restarting at 0 for each text
    segments: torch.Tensor  # (total tokens,) which text each token belongs to
    lengths: list[int]

    def to(self, device) -> "PackedBatch":
        return PackedBatch(self.input_ids.to(device), self.position_ids.to(device), self.segments.to(device),
                           self.lengths)


def pack(ids: list[list[int]]) -> PackedBatch:
    lengths = [len(x) for x in ids]
    if min(lengths) < 1:
        raise Decoder2VecError("an unpadded batch cannot hold an empty text")
    flat = torch.tensor([t for x in ids for t in x], dtype=torch.long)
    positions = torch.cat([torch.arange(n) for n in lengths])
    segments = torch.repeat_interleave(torch.arange(len(ids)), torch.tensor(lengths))
    return PackedBatch(flat[None], positions[None], segments, lengths)


def uses_varlen_kernel(model) -> bool:
    return getattr(model.config, "_attn_implementation", None) in VARLEN_IMPLEMENTATIONS


def check_unpadded(model, takes_position_ids: bool, longest: int) -> None:
    """Packing needs per-text positions; the mask path has no sliding windows (harmless while
    no text is longer than the window)."""
    if not takes_position_ids:
        raise Decoder2VecError(f"{type(model).__name__} takes no position_ids: texts cannot be packed; "
                               "use unpadded=False")
    if uses_varlen_kernel(model):
        return
    windows = [cfg.sliding_window for cfg in _text_configs(model.config) if getattr(cfg, "sliding_window", None)
               and getattr(cfg, "use_sliding_window", True)]
    if windows and longest > min(windows):
        raise Decoder2VecError(
            f"a {longest}-token text is longer than the model's {min(windows)}-token sliding window: unpadded "
            "batches then need a flash-attention kernel (attn_implementation='flash_attention_2' on a GPU); "
            "use unpadded=False here")


def _text_configs(config):
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return [config] if text is config else [config, text]


def block_diagonal_mask(segments: torch.Tensor, model) -> torch.Tensor:
    """(1, 1, T, T): True (or 0.0 for eager's additive masks) where two tokens share a text."""
    same = segments[:, None] == segments[None, :]
    if getattr(model.config, "_attn_implementation", None) == "eager":
        dtype = next(model.parameters()).dtype
        return torch.zeros(same.shape, dtype=dtype, device=same.device).masked_fill_(
            ~same, torch.finfo(dtype).min)[None, None]
    return same[None, None]


def unpack(states: torch.Tensor, packed: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, T, dim) packed states -> (texts, longest, dim) right-padded states and their
    (texts, longest) attention mask, for pooling."""
    n, width = len(packed.lengths), max(packed.lengths)
    starts = torch.cumsum(torch.tensor([0] + packed.lengths[:-1], device=states.device), 0)
    columns = torch.arange(states.shape[1], device=states.device) - starts[packed.segments]
    padded = states.new_zeros(n, width, states.shape[-1])
    padded[packed.segments, columns] = states[0]
    attention = torch.zeros(n, width, dtype=torch.long, device=states.device)
    attention[packed.segments, columns] = 1
    return padded, attention
