"""NV-Embed latent-attention pooling: the layer (identity before training, sizes saved with it),
and training it with a contrastive stage on a tiny model: trained, saved, reloaded, kept training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.folder.latent_attention import FILE as LATENT_ATTENTION_FILE, load_latent_attention, save_latent_attention
from decoder2vec.model.pooling import LatentAttention, latent_attention_pool, pool
from decoder2vec.folder.export import export_sentence_transformers
from decoder2vec.training import train
from test_training_support import FAST, corpus_file, encoder_folder, pairs_file


def test_an_untrained_layer_leaves_the_pooling_as_it_was():
    torch.manual_seed(0)
    states, mask = torch.randn(3, 5, 32), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 0]])
    layer = LatentAttention(32, latents=16, heads=4)
    assert torch.equal(latent_attention_pool(layer, states, mask, mask, "mean"), pool(states, mask, mask, "mean"))
    with torch.no_grad():
        layer.to_out.weight.normal_()
    assert not torch.allclose(latent_attention_pool(layer, states, mask, mask, "mean"), pool(states, mask, mask, "mean"))


def test_the_layer_round_trips_through_its_file(tmp_path):
    torch.manual_seed(0)
    layer = LatentAttention(32, latents=16, heads=4)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    save_latent_attention(layer, tmp_path)
    loaded = load_latent_attention(tmp_path)
    assert (loaded.n_latents, loaded.heads, loaded.dim) == (16, 4, 32)
    states = torch.randn(2, 4, 32)
    assert torch.equal(loaded(states), layer.eval()(states))
    assert load_latent_attention(tmp_path / "nothing") is None


def test_heads_must_divide_the_dimension():
    with pytest.raises(Decoder2VecError, match="latent_attention_heads=5 must divide the model's dimension 32"):
        LatentAttention(32, latents=4, heads=5)


def test_a_contrastive_stage_trains_and_saves_the_layer_and_the_next_stage_keeps_training_it(tmp_path):
    folder = train({"stage": "simcse", "model": str(encoder_folder(tmp_path)), "data": [str(corpus_file(tmp_path))],
                    "output_dir": str(tmp_path / "simcse"), "min_words": 3, "latent_attention": 8,
                    "latent_attention_heads": 4, "learning_rate": 1e-2, **FAST, "max_steps": 3})
    layer = load_latent_attention(folder)
    assert layer.n_latents == 8 and layer.heads == 4
    assert layer.to_out.weight.abs().sum() > 0  # started at zero: trained
    record = json.loads((folder / "decoder2vec_config.json").read_text())["stages"][-1]
    assert record["hyperparameters"]["latent_attention"] == 8
    with pytest.raises(Decoder2VecError, match="already has a latent-attention layer of 8 latents"):
        train({"stage": "supervised", "model": str(folder), "data": [str(pairs_file(tmp_path))],
               "output_dir": str(tmp_path / "bad"), "latent_attention": 16, **FAST, "max_steps": 1})
    second = train({"stage": "supervised", "model": str(folder), "data": [str(pairs_file(tmp_path))],
                    "output_dir": str(tmp_path / "supervised"), "learning_rate": 1e-2, **FAST, "max_steps": 2})
    again = load_latent_attention(second)
    assert again is not None and not torch.equal(again.to_out.weight, layer.to_out.weight)
    # The layer's vectors: the folder's token states through the loaded layer, then its pooling.
    encoder = Encoder.from_pretrained(second)
    ids, masks, _ = encoder.tokenize(["a short text", "another one"])
    batch = encoder.collate(ids, masks)
    with torch.no_grad():
        vectors = latent_attention_pool(again, encoder.hidden_states(batch), batch.pool_mask, batch.attention_mask,
                                        encoder.pooling)
    assert vectors.shape == (2, 32) and torch.isfinite(vectors).all()
    assert (second / LATENT_ATTENTION_FILE).is_file()
    # encode runs the layer (and so differs from plain pooling of the same states) ...
    np.testing.assert_allclose(encoder.encode(["a short text", "another one"]), vectors.numpy(), rtol=1e-5, atol=1e-6)
    plain = pool(encoder.hidden_states(batch).detach(), batch.pool_mask, batch.attention_mask, encoder.pooling)
    assert not np.allclose(plain.numpy(), vectors.numpy(), atol=1e-4)
    # ... saving keeps it, and a plain sentence-transformers export is refused (its Pooling cannot run it).
    saved = Encoder.from_pretrained(encoder.save_pretrained(tmp_path / "saved"))
    np.testing.assert_allclose(saved.encode(["a short text", "another one"]), vectors.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(Decoder2VecError, match="latent-attention pooling layer.*--exact"):
        export_sentence_transformers(saved, tmp_path / "st")


def test_a_trained_folder_loads_in_sentence_transformers_with_its_layer_or_not_at_all(tmp_path):
    """Issue 23, case 3: the stage's folder named plain Transformer + Pooling in modules.json, so
    SentenceTransformer(folder) ran without the layer (cosine 0.94-0.96 to encode, no warning)."""
    from sentence_transformers import SentenceTransformer

    folder = train({"stage": "simcse", "model": str(encoder_folder(tmp_path)), "data": [str(corpus_file(tmp_path))],
                    "output_dir": str(tmp_path / "simcse"), "min_words": 3, "latent_attention": 8,
                    "latent_attention_heads": 4, "learning_rate": 5e-2, **FAST, "max_steps": 3})
    texts = ["a short text", "another one, a little longer than the first", "x"]
    expected = Encoder.from_pretrained(folder).encode(texts)
    with pytest.raises(ValueError, match="trust_remote_code"):  # the clear failure, never other vectors
        SentenceTransformer(str(folder), device="cpu")
    st = SentenceTransformer(str(folder), device="cpu", trust_remote_code=True)
    np.testing.assert_allclose(st.encode(texts), expected, rtol=1e-5, atol=1e-5)
    # and the layer matters here: plain pooling of the same folder gives other vectors
    ids, masks, _ = (encoder := Encoder.from_pretrained(folder)).tokenize(texts)
    batch = encoder.collate(ids, masks)
    with torch.no_grad():
        plain = pool(encoder.hidden_states(batch), batch.pool_mask, batch.attention_mask, encoder.pooling).numpy()
    assert np.abs(plain - expected).max() > 1e-3
