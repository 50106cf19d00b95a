"""Training NV-Embed's latent-attention pooling (pooling.LatentAttention) with any stage that trains
the pooled vector: the layer runs over the token states before the stage's pooling, its parameters
are trained alongside LoRA (an extra module of the stage: in the optimizer and in every checkpoint)
and it is saved as latent_attention.safetensors in the finished folder.

A stage starts a fresh layer when `latent_attention` > 0, and keeps training the layer its input
folder already has (so a later stage never drops it).
"""

from __future__ import annotations

import torch

from ..errors import Decoder2VecError
from ..folder.latent_attention import load_latent_attention, save_latent_attention
from ..model.pooling import LatentAttention, latent_attention_pool


def apply_latent_attention(stage) -> None:
    """Route `stage`'s embedding through a latent-attention layer (no-op when there is none)."""
    config = stage.config
    latents = getattr(config, "latent_attention", 0)
    if not hasattr(stage, "encoder"):
        return
    module = load_latent_attention(config.model) if config.model else None
    if module is None and not latents:
        return
    if module is None:
        torch.manual_seed(config.seed)
        module = LatentAttention(stage.encoder.dimension, latents=latents, heads=config.latent_attention_heads)
    elif latents and latents != module.n_latents:
        raise Decoder2VecError(f"{config.stage}: {config.model} already has a latent-attention layer of "
                               f"{module.n_latents} latents; latent_attention: {latents} differs (set it to "
                               f"{module.n_latents} or 0 to keep training that layer)")
    module.train()
    stage.latent_attention = module
    view = stage.view

    def embed(model, batch):
        # EncoderStage.embed with the layer between the token states and the pooling.
        view.model = model
        stage.tokens_seen += int(batch.attention_mask.sum())
        batch = batch.to(view.device)
        states = view.hidden_states(batch)
        return latent_attention_pool(module, states, batch.pool_mask, batch.attention_mask, config.pooling)

    extra_modules, write_extras = stage.extra_modules, stage.write_extras

    def write(folder) -> None:
        write_extras(folder)
        save_latent_attention(module, folder)

    stage.embed = embed
    stage.extra_modules = lambda: {**extra_modules(), "latent_attention": module}
    stage.write_extras = write
