"""The int8 path: same shapes, vectors close to fp32, bidirectional attention kept."""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from decoder2vec import Decoder2VecError
from decoder2vec.model.quantization import Int8Linear, is_quantized, quantize_model
from tiny import CORPUS, tiny_encoder


def _cos(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_int8_linear_matches_float_linear():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(3, 5, 64)
    q = Int8Linear(linear)
    out = q(x)
    assert out.shape == (3, 5, 48) and out.dtype == torch.float32
    assert q.weight_int8.dtype == torch.int8
    # int8 rounding error of a 64-term dot product: well under 2% of the output's scale.
    expected = linear(x).detach()
    assert (out - expected).abs().max() < 0.02 * expected.abs().max()


def test_int8_linear_without_bias_and_with_zero_rows():
    linear = nn.Linear(16, 8, bias=False)
    x = torch.zeros(2, 16)  # an all-zero token must not divide by zero
    out = Int8Linear(linear)(x)
    assert torch.equal(out, torch.zeros(2, 8))


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt_neox", "gpt2"])
def test_quantized_encoder_close_to_fp32(family):
    encoder = tiny_encoder(family)
    texts = CORPUS[:6]
    fp32 = encoder.encode(texts)
    quantize_model(encoder, "int8")
    assert is_quantized(encoder)
    linears = [m for m in encoder.model.modules() if type(m) is nn.Linear or type(m).__name__ == "Conv1D"]
    assert not linears, "every Linear should be int8"
    int8 = encoder.encode(texts)
    assert int8.shape == fp32.shape and int8.dtype == np.float32
    assert _cos(int8, fp32).min() > 0.99


def test_quantized_encoder_stays_bidirectional():
    encoder = quantize_model(tiny_encoder("llama"), "int8")
    assert encoder.is_bidirectional()
    ids, masks, _ = encoder.tokenize(["The quick brown fox", "The quick brown dog"])
    batch = encoder.collate(ids, masks)
    with torch.inference_mode():
        states = encoder.hidden_states(batch)
    # Only the last token differs; with bidirectional attention the first position sees it.
    assert not torch.allclose(states[0, 0], states[1, 0])


def test_quantize_plain_module_and_skip():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    original = copy.deepcopy(model)
    assert quantize_model(model, skip=("2",)) is model
    assert isinstance(model[0], Int8Linear) and type(model[2]) is nn.Linear
    x = torch.randn(4, 8)
    assert torch.allclose(model(x), original(x), atol=0.05)


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(Decoder2VecError, match="int4"):
        quantize_model(nn.Linear(2, 2), "int4")


def test_outlier_channel_runs_in_float():
    # One "massive activation" channel 1000x the rest: per-token scales alone would round the
    # other 63 channels of that token to zero; the fixed float channel keeps them.
    torch.manual_seed(0)
    linear = nn.Linear(64, 32, bias=False)
    x = torch.randn(4, 64)
    x[0, 7] = 1000.0
    q = Int8Linear(linear, outliers=torch.tensor([7, 30]))
    expected = linear(x).detach()
    rest = expected - x[:, 7:8] * linear.weight[:, 7].detach()  # the output without channel 7
    error = q(x) - expected
    assert error[0].abs().max() < 0.05 * rest[0].abs().max()
    # Without the float channel the same token is rounded to almost nothing but channel 7.
    plain = Int8Linear(linear)(x) - expected
    assert plain[0].abs().max() > 0.2 * rest[0].abs().max()


def test_int8_rows_do_not_depend_on_the_other_rows():
    # The batch-dependence of the old layer: outlier channels chosen from the batch. Now a row's
    # output is a function of that row alone (bit for bit: int8 matmul rows are exact).
    torch.manual_seed(0)
    q = Int8Linear(nn.Linear(64, 32), outliers=torch.tensor([3, 9]))
    x = torch.randn(6, 64)
    x[5, 40] = 500.0  # a massive activation in another row must not change row 0
    alone = q(x[:1])
    assert torch.allclose(q(x)[:1], alone, atol=1e-6)
    assert torch.allclose(q(x.flip(0))[-1:], alone, atol=1e-6)


def test_calibration_fixes_the_outlier_channels_of_an_encoder():
    encoder = tiny_encoder("llama")
    with torch.no_grad():  # a massive-activation channel, as real LLMs have
        encoder.model.embed_tokens.weight[:, 5] *= 200
    quantize_model(encoder, "int8")
    first = encoder.model.layers[0].self_attn.q_proj
    assert first.outliers.numel() == 1 and int(first.outliers[0]) == 5


def test_quantizing_frees_each_fp32_weight_as_it_goes():
    encoder = tiny_encoder("llama")
    linear = encoder.model.layers[0].mlp.up_proj
    quantize_model(encoder, "int8")
    assert linear.weight is None  # the replaced layer no longer holds its fp32 weight


def test_from_pretrained_quantize_int8(tmp_path):
    from tiny import tiny_encoder

    from decoder2vec import Encoder
    from decoder2vec.model.quantization import is_quantized

    folder = tiny_encoder("llama").save_pretrained(tmp_path / "enc")
    fp32 = Encoder.from_pretrained(folder)
    int8 = Encoder.from_pretrained(folder, quantize="int8")
    assert is_quantized(int8.model) and not is_quantized(fp32.model)
    texts = ["The quick brown fox jumps over the lazy dog.", "Paris is the capital of France."]
    a = fp32.encode(texts, normalize_embeddings=True)
    b = int8.encode(texts, normalize_embeddings=True)
    assert (a * b).sum(1).min() > 0.9
