"""Bidirectional attention, proved on a tiny random model of every supported family."""

import pytest
import torch
from tiny import FAMILIES, tiny_encoder, tiny_model

from decoder2vec import is_bidirectional, make_bidirectional, make_causal

pytestmark = pytest.mark.parametrize("family", list(FAMILIES))

SEQ = 10  # longer than the tiny sliding windows (4), so windowed layers are exercised too


def _states(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


def _ids(seed=0, length=SEQ, batch=2):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, 300, (batch, length), generator=gen)


def _changed_last(ids):
    other = ids.clone()
    other[:, -1] = (other[:, -1] + 7) % 300 + 3
    return other


def test_causal_then_bidirectional(family):
    model = tiny_model(family)
    ids = _ids()
    other = _changed_last(ids)
    assert not is_bidirectional(model)
    # Causal: the first position cannot see the last token.
    torch.testing.assert_close(_states(model, ids)[:, 0], _states(model, other)[:, 0], rtol=0, atol=1e-6)

    make_bidirectional(model)
    assert is_bidirectional(model)
    first, first_other = _states(model, ids)[:, 0], _states(model, other)[:, 0]
    assert (first - first_other).abs().max() > 1e-4, "the first token does not see the last one"


def test_make_causal_round_trips(family):
    model = tiny_model(family)
    ids = _ids(seed=1)
    causal = _states(model, ids)
    bidirectional = _states(make_bidirectional(model), ids)
    assert (causal - bidirectional).abs().max() > 1e-4
    back = _states(make_causal(model), ids)
    assert not is_bidirectional(model)
    torch.testing.assert_close(back, causal, rtol=0, atol=1e-6)
    torch.testing.assert_close(_states(make_bidirectional(model), ids), bidirectional, rtol=0, atol=1e-6)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_never_changes_real_tokens(family, side, bidirectional):
    encoder = tiny_encoder(family, bidirectional=bidirectional)
    assert encoder.is_bidirectional() is bidirectional
    encoder.padding_side = side
    short, long = _ids(seed=2, length=6, batch=1)[0].tolist(), _ids(seed=3, length=SEQ + 3, batch=1)[0].tolist()
    masks = [torch.ones(len(short), dtype=torch.bool).numpy(), torch.ones(len(long), dtype=torch.bool).numpy()]
    with torch.no_grad():
        alone = encoder.hidden_states(encoder.collate([short], masks[:1]))[0]
        padded = encoder.hidden_states(encoder.collate([short, long], masks))
        long_alone = encoder.hidden_states(encoder.collate([long], masks[1:]))[0]
    width = padded.shape[1]
    real = slice(0, len(short)) if side == "right" else slice(width - len(short), width)
    torch.testing.assert_close(padded[0, real], alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(padded[1], long_alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_chunked_attention_equals_sdpa(family, bidirectional, monkeypatch):
    """Long inputs run attention in query blocks (no length x length mask); same numbers."""
    from decoder2vec.model import chunked_attention as ca

    encoder = tiny_encoder(family, bidirectional=bidirectional)
    blocks = []
    block = ca.LazyMask.block
    monkeypatch.setattr(ca, "BLOCK_ELEMENTS", 64)  # many small blocks on a short input
    monkeypatch.setattr(ca.LazyMask, "block", lambda self, *a: blocks.append(a) or block(self, *a))
    texts = [_ids(seed=4, length=SEQ + 5, batch=1)[0].tolist(), _ids(seed=5, length=5, batch=1)[0].tolist()]
    masks = [torch.ones(len(t), dtype=torch.bool).numpy() for t in texts]
    for side in ("right", "left"):
        encoder.padding_side = side
        batch = encoder.collate(texts, masks)
        with torch.no_grad():
            plain = encoder.hidden_states(batch)
            with ca.chunked_attention(encoder.model):
                chunked = encoder.hidden_states(batch)
        real = batch.attention_mask.bool()
        torch.testing.assert_close(chunked[real], plain[real], rtol=0, atol=1e-5)
        assert torch.isfinite(chunked).all()
    assert encoder.model.config._attn_implementation in ("sdpa", "eager")  # restored
    if ca.supports_chunking(encoder.model):
        assert len(blocks) > 4, "the chunked path was not taken"
    else:  # eager-only families (Gemma-2) keep their kernel
        assert not blocks


def test_long_batches_switch_to_chunks(family, monkeypatch):
    from decoder2vec.model import chunked_attention as ca
    from decoder2vec.backends import torch as torch_backend

    encoder = tiny_encoder(family)
    texts = ["word " * 20, "short"]
    plain = encoder.encode(texts)
    seen = []
    monkeypatch.setattr(torch_backend, "CHUNKED_ATTENTION_ABOVE", 100)
    original = ca.chunked_sdpa_attention
    monkeypatch.setattr(ca, "chunked_sdpa_attention", lambda *a, **k: seen.append(1) or original(*a, **k))
    ca._registered = False  # re-register the patched function
    try:
        np_chunked = encoder.encode(texts)
    finally:
        ca._registered = False
    assert abs(np_chunked - plain).max() < 1e-4
    assert bool(seen) == ca.supports_chunking(encoder.model)
