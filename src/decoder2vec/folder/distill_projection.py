"""The distill stage's trained projection (student dim -> teacher dim, one per Matryoshka dim), kept
for inspection; the Encoder never loads it: `distill_projection.safetensors`, "<dim>.weight" tensors."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

FILE = "distill_projection.safetensors"


def save_projection(projection, folder) -> None:
    """`projection`: {str(dim): nn.Linear}, written fp32."""
    save_file({f"{d}.weight": layer.weight.detach().float().cpu().contiguous() for d, layer in projection.items()},
              str(Path(folder) / FILE))

