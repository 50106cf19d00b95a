"""Attention in query chunks, so a long text never materialises a (length x length) mask.

transformers builds the attention mask before the layers run. With SDPA and no padding, a full
bidirectional mask is skipped (None) and SDPA runs mask-free in bounded memory; but a sliding-window
layer (Gemma-2/3, Mistral, Qwen2 with sliding windows) or a padded batch gets a boolean
(batch, 1, length, length) mask, which SDPA on CPU also turns into a float mask of the same size:
about 5 GiB per layer for one 32k-token text.

`chunked_attention(model)` swaps, for the duration of a forward pass, the model's attention
implementation for one registered here: its mask function returns a `LazyMask` (the index-based
mask function transformers would have expanded, plus the padding mask) instead of the tensor, and
its attention function evaluates that mask one block of queries at a time, over only the keys a
sliding window can reach. Results equal plain SDPA's (tested on every tiny family); memory grows
linearly with the length. Nothing is per-architecture: it relies only on transformers' mask
functions being index-based, which is how they are written (`use_vmap` ones fall back to SDPA).

Under gradient checkpointing a layer's forward runs again in the backward pass, after this block
has switched the model back to SDPA, with the LazyMask it was given: each checkpointed layer's
recompute therefore enters the chunked mode again (`_chunked_recompute`).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Callable

import torch
from transformers import AttentionInterface
from transformers import masking_utils as mu
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, and_masks, padding_mask_function
from transformers.modeling_layers import GradientCheckpointingLayer

NAME = "decoder2vec_chunked_sdpa"
# Elements of one block's mask (batch x queries x keys): 2**24 is 16 MiB as bool, 64 MiB as float.
BLOCK_ELEMENTS = 2**24


@dataclass
class LazyMask:
    """A mask that is evaluated block by block: mask_function(batch, head, query, key) -> bool."""

    mask_function: Callable
    padding_mask: torch.Tensor | None  # (batch, keys) bool, True = real token
    batch_size: int
    q_offset: int
    kv_offset: int
    local_size: int | None  # sliding window: keys further than this from a query are never seen

    def block(self, q0: int, q1: int, k0: int, k1: int, device) -> torch.Tensor:
        fn = self.mask_function
        if self.padding_mask is not None:
            fn = and_masks(fn, padding_mask_function(self.padding_mask))
        b = torch.arange(self.batch_size, device=device)[:, None, None, None]
        h = torch.arange(1, device=device)[None, :, None, None]
        q = (torch.arange(q0, q1, device=device) + self.q_offset)[None, None, :, None]
        kv = (torch.arange(k0, k1, device=device) + self.kv_offset)[None, None, None, :]
        return fn(b, h, q, kv).expand(self.batch_size, 1, q1 - q0, k1 - k0)


def lazy_sdpa_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    mask_function: Callable | None = None,
    attention_mask: torch.Tensor | None = None,
    local_size: int | None = None,
    allow_is_causal_skip: bool = True,
    allow_is_bidirectional_skip: bool = False,
    use_vmap: bool = False,
    **kwargs,
):
    """Same contract as transformers' `sdpa_mask`, but returns None (mask-free SDPA) or a LazyMask."""
    call = dict(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                kv_offset=kv_offset, attention_mask=attention_mask, local_size=local_size,
                allow_is_causal_skip=allow_is_causal_skip, allow_is_bidirectional_skip=allow_is_bidirectional_skip,
                use_vmap=use_vmap, **kwargs)
    if mask_function is not None:
        call["mask_function"] = mask_function
    if use_vmap or mask_function is None:
        return mu.sdpa_mask(**call)  # a custom (non index-based) mask: let transformers expand it
    padding = mu.prepare_padding_mask(attention_mask, kv_length, kv_offset)
    if allow_is_causal_skip and mu._ignore_causal_mask_sdpa(padding, q_length, kv_length, q_offset, kv_offset, local_size):
        return None
    if allow_is_bidirectional_skip and mu._ignore_bidirectional_mask_sdpa(padding, kv_length, local_size):
        return None
    return LazyMask(mask_function, padding, batch_size, q_offset, kv_offset, local_size)


def chunked_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention over query blocks; plain SDPA when the mask is a tensor or None."""
    if not isinstance(attention_mask, LazyMask):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if kwargs.get("softcap") is not None:
        raise ValueError("attention soft-capping needs attn_implementation='eager'")
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    batch, heads, q_length, _ = query.shape
    kv_length = key.shape[2]
    window = attention_mask.local_size or kwargs.get("sliding_window")
    if attention_mask.q_offset != attention_mask.kv_offset:
        window = None  # with a cache, indices are not positions: visit every key, the mask decides
    # Budget per block counts heads too: a kernel without mask support materialises the scores.
    reach = kv_length if window is None else min(kv_length, 4 * window)
    step = max(1, BLOCK_ELEMENTS // (batch * heads * max(reach, 1)))
    if window is not None:
        step = min(step, 2 * window)  # keeps a block's keys within (step + 2 * window) <= reach
    outputs = []
    for q0 in range(0, q_length, step):
        q1 = min(q_length, q0 + step)
        # A sliding window (causal or two-sided) never reaches further than `window` keys away.
        k0, k1 = (0, kv_length) if window is None else (max(0, q0 - window), min(kv_length, q1 + window))
        mask = attention_mask.block(q0, q1, k0, k1, query.device)
        out = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, q0:q1], key[:, :, k0:k1], value[:, :, k0:k1], attn_mask=mask,
            dropout_p=dropout if module.training else 0.0, scale=scaling,
        )
        # A query that sees no key at all (a padding position) gives NaN; make it 0 like SDPA's
        # skipped rows, so NaN never reaches pooling (0 * NaN is NaN).
        outputs.append(torch.where(mask.any(-1, keepdim=True), out, 0.0))
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        AttentionInterface.register(NAME, chunked_sdpa_attention)
        AttentionMaskInterface.register(NAME, lazy_sdpa_mask)
        _registered = True


def _configs(config):
    seen, todo = [], [config]
    while todo:
        cfg = todo.pop()
        if any(cfg is s for s in seen):
            continue
        seen.append(cfg)
        todo.extend(getattr(cfg, name) for name in getattr(cfg, "sub_configs", {}) if getattr(cfg, name, None) is not None)
    return seen


def supports_chunking(model) -> bool:
    """Only models running SDPA switch; eager-only families (Gemma-2's soft-capping) keep eager."""
    return getattr(model.config, "_attn_implementation", None) in ("sdpa", NAME)


_lock = threading.Lock()


def _unwrap(model):
    """The transformers model inside training wrappers: DDP and FSDP keep it as `.module` and have
    no `.config`; peft models hand it out with get_base_model()."""
    while True:
        if hasattr(model, "get_base_model") and model is not model.get_base_model():
            model = model.get_base_model()
        elif not hasattr(model, "config") and isinstance(getattr(model, "module", None), torch.nn.Module):
            model = model.module
        else:
            return model


@contextlib.contextmanager
def chunked_attention(model):
    """Within this block the model's SDPA attention runs in query chunks (see the module docstring).

    Nesting or overlapping blocks on one model are counted, so the switch back to SDPA happens only
    when the last one ends (a forward that began chunked must not end on plain SDPA). A wrapped
    model (DDP/FSDP's `.module`, peft's base model) is switched at the transformers model inside."""
    model = _unwrap(model)
    if not supports_chunking(model):
        yield model
        return
    _register()
    with _lock:
        depth = getattr(model, "_decoder2vec_chunked_depth", 0)
        if depth == 0:
            model._decoder2vec_switched = [cfg for cfg in _configs(model.config) if cfg._attn_implementation == "sdpa"]
            for cfg in model._decoder2vec_switched:
                cfg._attn_implementation_internal = NAME
        model._decoder2vec_chunked_depth = depth + 1
    restore = _chunked_recompute(model) if torch.is_grad_enabled() else []
    try:
        yield model
    finally:
        for layer, function in restore:
            layer._gradient_checkpointing_func = function
        with _lock:
            model._decoder2vec_chunked_depth -= 1
            if model._decoder2vec_chunked_depth == 0:
                for cfg in model._decoder2vec_switched:
                    cfg._attn_implementation_internal = "sdpa"


def _chunked_recompute(model) -> list:
    """While a chunked forward runs, wrap every checkpointed layer's checkpoint function so that
    the function it saves for the backward pass (the layer's forward) runs under chunked_attention
    too: the recompute happens after this block ended, with a LazyMask that plain SDPA cannot take.
    Works for reentrant and non-reentrant checkpointing alike. Returns (layer, original function)
    pairs to put back."""
    restore = []
    for layer in model.modules():
        function = getattr(layer, "_gradient_checkpointing_func", None)
        if not isinstance(layer, GradientCheckpointingLayer) or function is None or not layer.gradient_checkpointing:
            continue
        restore.append((layer, function))
        layer._gradient_checkpointing_func = _checkpoint_chunked(model, function)
    return restore


def _checkpoint_chunked(model, checkpoint):
    def run(forward, *args, **kwargs):
        def chunked_forward(*inner, **inner_kwargs):
            with chunked_attention(model):  # nested in the first pass, switches again in the recompute
                return forward(*inner, **inner_kwargs)

        return checkpoint(chunked_forward, *args, **kwargs)

    return run
