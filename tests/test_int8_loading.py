"""int8 while loading (model/int8_loading.py): the same int8 model as loading fp32 and quantising it
afterwards (quantization.quantize_model), never holding the whole fp32 model."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from decoder2vec import Encoder
from decoder2vec.model import int8_loading
from decoder2vec import encoder as encoder_module
from decoder2vec.model.quantization import Int8Linear, is_quantized, quantize_model
from tiny import CORPUS, assert_batch_invariant, tiny_config, tiny_encoder, tiny_tokenizer

TEXTS = CORPUS[:6]
# RoPE + SwiGLU, learned positions + Conv1D, sliding windows, parallel attention, OPT's projections.
FAMILIES = ["llama", "gpt2", "gemma3_text", "gpt_neox", "opt"]


def _streamed(folder, monkeypatch, **kwargs) -> Encoder:
    """Encoder.from_pretrained(folder, quantize="int8"), failing if it quantised a full fp32 load."""
    def full_load_quantized(*args, **kw):
        raise AssertionError("quantised after a full fp32 load, not while loading")

    with monkeypatch.context() as patch:
        patch.setattr(encoder_module, "quantize_model", full_load_quantized)
        return Encoder.from_pretrained(folder, quantize="int8", **kwargs)


def _quantized_after_full_load(folder) -> Encoder:
    return quantize_model(Encoder.from_pretrained(folder), "int8")


def _assert_same_model(new: Encoder, old: Encoder) -> None:
    a, b = new.model.state_dict(), old.model.state_dict()
    assert a.keys() == b.keys()
    for key in b:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    assert not any(t.is_meta for t in list(new.model.parameters()) + list(new.model.buffers()))


@pytest.mark.parametrize("family", FAMILIES)
def test_streamed_int8_equals_int8_after_a_full_load(family, tmp_path, monkeypatch):
    folder = tiny_encoder(family).save_pretrained(tmp_path / "encoder")
    new = _streamed(folder, monkeypatch)
    old = _quantized_after_full_load(folder)
    assert is_quantized(new)
    _assert_same_model(new, old)
    assert np.array_equal(new.encode(TEXTS), old.encode(TEXTS))


def test_streamed_int8_keeps_the_calibrated_outlier_channel(tmp_path, monkeypatch):
    encoder = tiny_encoder("llama")
    with torch.no_grad():  # a massive-activation channel, as real LLMs have
        encoder.model.embed_tokens.weight[:, 5] *= 200
    new = _streamed(encoder.save_pretrained(tmp_path / "encoder"), monkeypatch)
    first = new.model.layers[0].self_attn.q_proj
    assert isinstance(first, Int8Linear) and first.outliers.tolist() == [5]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_streamed_int8_vectors_do_not_depend_on_the_batch(family, tmp_path, monkeypatch):
    encoder = _streamed(tiny_encoder(family).save_pretrained(tmp_path / "encoder"), monkeypatch)
    assert_batch_invariant(encoder, TEXTS)


def test_a_causal_lm_folder_streams_into_the_backbone(tmp_path, monkeypatch):
    """A transformers folder of the LM (tensors named "model.layers...", an lm_head tied to the
    embeddings): the backbone takes its own tensors and leaves the head."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = tiny_config("llama")
    config.tie_word_embeddings = True
    lm = AutoModelForCausalLM.from_config(config)
    lm.save_pretrained(tmp_path / "lm")
    tiny_tokenizer().save_pretrained(tmp_path / "lm")
    assert any(key.startswith("model.layers.") for key in load_file(tmp_path / "lm" / "model.safetensors"))
    new = _streamed(tmp_path / "lm", monkeypatch)
    old = _quantized_after_full_load(tmp_path / "lm")
    _assert_same_model(new, old)
    assert torch.equal(new.model.embed_tokens.weight, lm.model.embed_tokens.weight)
    assert np.array_equal(new.encode(TEXTS), old.encode(TEXTS))


def test_a_sharded_bf16_folder_streams(tmp_path, monkeypatch):
    """Weights over several files, stored in bf16: read file by file, widened to fp32 as the full
    load does."""
    from tiny import tiny_model

    tiny_model("qwen2").to(torch.bfloat16).save_pretrained(tmp_path / "model", max_shard_size="20KB")
    tiny_tokenizer().save_pretrained(tmp_path / "model")
    assert len(list((tmp_path / "model").glob("*.safetensors"))) > 1
    new = _streamed(tmp_path / "model", monkeypatch)
    old = _quantized_after_full_load(tmp_path / "model")
    _assert_same_model(new, old)
    assert new.model.embed_tokens.weight.dtype == torch.float32
    assert np.array_equal(new.encode(TEXTS), old.encode(TEXTS))


def test_a_checkpoint_missing_a_weight_loads_in_full(tmp_path):
    folder = tiny_encoder("llama").save_pretrained(tmp_path / "encoder")
    weights = load_file(folder / "model.safetensors")
    del weights["layers.0.mlp.up_proj.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    encoder = Encoder.from_pretrained(folder, quantize="int8")  # transformers' loader, then quantised
    assert is_quantized(encoder) and encoder.encode(TEXTS).shape == (len(TEXTS), 32)


def test_only_cpu_fp32_int8_of_a_local_folder_streams(tmp_path):
    folder = tiny_encoder("llama").save_pretrained(tmp_path / "encoder")
    assert int8_loading.streams(str(folder), "int8", "cpu", None)
    assert int8_loading.streams(str(folder), "int8", None, "float32") == (not torch.cuda.is_available())
    assert not int8_loading.streams(str(folder), None, "cpu", None)
    assert not int8_loading.streams(str(folder), "int8", "cpu", "bf16")
    assert not int8_loading.streams("HuggingFaceTB/SmolLM2-135M", "int8", "cpu", None)


@pytest.mark.real
def test_streamed_int8_smollm2_equals_int8_after_a_full_load(monkeypatch):
    new = _streamed(None, monkeypatch)
    old = quantize_model(Encoder.from_pretrained(), "int8")
    _assert_same_model(new, old)
    texts = ["The quick brown fox jumps over the lazy dog.", "Hvad er en sætningsvektor?", "x = 3.14"]
    assert np.array_equal(new.encode(texts), old.encode(texts))
