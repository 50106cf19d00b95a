"""The folder's latent-attention layer (NV-Embed's pooling layer, model/pooling.py's `LatentAttention`):
`latent_attention.safetensors`, fp32 weights with the layer's sizes in the file's metadata."""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import Decoder2VecError
from ..model.pooling import LatentAttention

FILE = "latent_attention.safetensors"


def save_latent_attention(module: LatentAttention, folder) -> None:
    """Write the layer (fp32) and its sizes to <folder>/latent_attention.safetensors."""
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, str(Path(folder) / FILE), metadata=module.settings())


def load_latent_attention(folder) -> LatentAttention | None:
    """The folder's trained latent-attention layer, else None (also for a path that is no folder)."""
    path = Path(folder).expanduser() / FILE
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    try:
        module = LatentAttention(int(meta["dim"]), latents=int(meta["latents"]), heads=int(meta["heads"]))
        module.load_state_dict(tensors)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise Decoder2VecError(f"{path}: not a decoder2vec latent-attention file ({type(exc).__name__}: {exc})") from exc
    return module.eval()
