"""Unpadded (packed, varlen) batches give the padded batches' vectors on every family."""

import numpy as np
import pytest
import torch
from tiny import CORPUS, FAMILIES, tiny_encoder

from decoder2vec import Decoder2VecError
from decoder2vec.model.unpadded import pack, unpack, uses_varlen_kernel

TEXTS = ["A cat.", *CORPUS[:5]]
# The tiny Gemma-2/3 configs use a 4-token sliding window; the mask path cannot express it.
WINDOWED = {"gemma2", "gemma3_text"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("pooling", ["mean", "last_token"])
def test_unpadded_equals_padded(family, pooling):
    encoder = tiny_encoder(family, pooling=pooling)
    padded = encoder.encode(TEXTS, instruction="Find:", batch_size=4, unpadded=False)
    if family in WINDOWED:
        with pytest.raises(Decoder2VecError, match="sliding window"):
            encoder.encode(TEXTS, batch_size=4, unpadded=True)
        return
    packed = encoder.encode(TEXTS, instruction="Find:", batch_size=4, unpadded=True)
    np.testing.assert_allclose(packed, padded, atol=1e-4, rtol=1e-4)


def test_windowed_family_packs_texts_shorter_than_the_window():
    encoder = tiny_encoder("gemma2")
    short = ["a b", "c"]  # <= 4 tokens with BOS: the window never cuts
    np.testing.assert_allclose(encoder.encode(short, unpadded=True), encoder.encode(short, unpadded=False),
                               atol=1e-4, rtol=1e-4)


def test_pack_and_unpack_round_trip():
    packed = pack([[5, 6, 7], [8], [9, 10]])
    assert packed.input_ids.tolist() == [[5, 6, 7, 8, 9, 10]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 0, 1]]
    states = torch.arange(6.0).reshape(1, 6, 1)
    padded, attention = unpack(states, packed)
    assert padded[..., 0].tolist() == [[0, 1, 2], [3, 0, 0], [4, 5, 0]]
    assert attention.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]


def test_flash_attention_models_default_to_unpadded():
    model = tiny_encoder("llama").model
    assert not uses_varlen_kernel(model)  # sdpa: padded by default
    model.config._attn_implementation_internal = "flash_attention_2"
    assert uses_varlen_kernel(model)
