"""The Encoder: pooling, instructions, invariance, saving, output options, bad input."""

import warnings

import numpy as np
import pytest
import torch
from tiny import CORPUS, FAMILIES, tiny_encoder

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.model.pooling import POOLINGS

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A cat.",
    "Paris is the capital of France, Berlin the capital of Germany, Copenhagen of Denmark.",
    "Embeddings map texts to vectors.",
    "dog",
    "Bidirectional attention lets every token see every other token, which decoders never do.",
    "Retrieve passages that answer the question: what is a transformer?",
]

REAL_TEXTS = [
    "The weather was cold and windy all week.",
    "Quantum computers use qubits instead of bits.",
    "She finally finished reading the novel.",
    "How do I reset my password?",
    "The recipe calls for two cups of flour, a pinch of salt and three eggs beaten until fluffy.",
    "Stock markets fell sharply on Monday after the central bank raised interest rates.",
    "Hi",
    "The mitochondria is the powerhouse of the cell.",
    "Copenhagen is the capital of Denmark.",
    "Please turn off the lights when you leave the room.",
    "In 1969, Apollo 11 landed on the Moon and Neil Armstrong became the first person to walk on its surface.",
    "Python is a popular programming language.",
    "A dog is chasing a ball in the park.",
    "Børn leger i haven.",
    "The train to Berlin departs at noon from platform four.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules inside plants.",
    "I love pizza.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The committee postponed its decision until further evidence could be gathered from independent experts.",
    "Der Hund schläft.",
]


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _assert_same(a, b, tol=1e-4):
    diff = np.abs(_unit(a) - _unit(b)).max()
    assert diff <= tol, f"max abs diff after L2 normalisation {diff:.2e} > {tol}"


# ----------------------------------------------------------------- pooling
def _hand_pool(states, pool_mask, attention_mask, pooling):
    """Row by row with Python loops: the reference the tensor code must match."""
    out = []
    for h, pm, am in zip(states, pool_mask.tolist(), attention_mask.tolist()):
        text = [i for i, m in enumerate(pm) if m]
        real = [i for i, m in enumerate(am) if m]
        if pooling == "mean":
            out.append(sum(h[i] for i in text) / len(text))
        elif pooling == "weighted_mean":
            weights = range(1, len(text) + 1)
            out.append(sum(w * h[i] for w, i in zip(weights, text)) / sum(weights))
        elif pooling == "last_token":
            out.append(h[real[-1]])
        elif pooling == "first_token":
            out.append(h[real[0]])
    return torch.stack(out)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_matches_hand_computation(pooling, side):
    encoder = tiny_encoder("llama", pooling=pooling)
    encoder.padding_side = side
    instructions = ["Represent the sentence:", None, "Find similar texts:", None]
    ids, masks, _ = encoder.tokenize(TEXTS[:4], instructions)
    batch = encoder.collate(ids, masks)
    with torch.no_grad():
        states = encoder.hidden_states(batch)
        pooled = encoder.embed(batch)
    expected = _hand_pool(states, batch.pool_mask, batch.attention_mask, pooling)
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- instructions
def test_pool_mask_covers_exactly_the_text():
    encoder = tiny_encoder("llama")
    text, instruction = "Bidirectional attention lets every token see", "Represent the sentence:"
    ids, masks, _ = encoder.tokenize([text, text], [instruction, None])
    (with_ids, plain_ids), (with_mask, plain_mask) = ids, masks
    decode = encoder.tokenizer.decode
    pooled = [t for t, m in zip(with_ids, with_mask) if m]
    unpooled = [t for t, m in zip(with_ids, with_mask) if not m]
    assert decode(pooled).strip() == text
    assert decode(unpooled).strip() == instruction
    assert unpooled == with_ids[: len(unpooled)], "instruction tokens come first"
    assert plain_mask.all() and decode(plain_ids) == text


def test_special_tokens_are_not_pooled(smollm2_tokenizer_encoder):
    encoder = smollm2_tokenizer_encoder
    ids, masks, _ = encoder.tokenize(["hello world"], ["Represent:"])
    special = set(encoder.tokenizer.all_special_ids)
    assert not any(m and t in special for t, m in zip(ids[0], masks[0]))
    assert encoder.tokenizer.decode([t for t, m in zip(ids[0], masks[0]) if m]).strip() == "hello world"


@pytest.fixture(scope="module")
def smollm2_tokenizer_encoder():
    """A tiny llama body behind the real SmolLM2 tokenizer (tokenization only; no real weights)."""
    from transformers import AutoTokenizer

    from decoder2vec.model import loading

    encoder = tiny_encoder("llama")
    encoder.tokenizer = AutoTokenizer.from_pretrained(loading.resolve_model(None))  # packaged: never skipped
    return encoder


def test_instruction_is_attended_but_not_pooled():
    encoder = tiny_encoder("llama")
    plain = encoder.encode(TEXTS[:3])
    instructed = encoder.encode(TEXTS[:3], instruction="Represent the sentence for retrieval:")
    assert np.abs(_unit(plain) - _unit(instructed)).max() > 1e-3, "the instruction changed nothing"
    # Same tokens pooled: the instruction's token count does not enter the mean.
    ids, masks, _ = encoder.tokenize(TEXTS[:3], ["Represent the sentence for retrieval:"] * 3)
    plain_ids, plain_masks, _ = encoder.tokenize(TEXTS[:3])
    assert [int(m.sum()) for m in masks] == [int(m.sum()) for m in plain_masks]
    assert all(len(a) > len(b) for a, b in zip(ids, plain_ids))


def test_per_call_and_per_text_instructions():
    encoder = tiny_encoder("qwen2")
    instruction = "Find similar texts:"
    shared = encoder.encode(TEXTS, instruction=instruction)
    listed = encoder.encode(TEXTS, instruction=[instruction] * len(TEXTS))
    np.testing.assert_allclose(shared, listed, rtol=0, atol=1e-6)

    mixed = [instruction, None, "", "Another task:", None, instruction, ""]
    together = encoder.encode(TEXTS, instruction=mixed)
    one_by_one = np.stack([encoder.encode(t, instruction=i) for t, i in zip(TEXTS, mixed)])
    _assert_same(together, one_by_one)
    # An empty instruction is no instruction.
    _assert_same(encoder.encode(TEXTS, instruction=""), encoder.encode(TEXTS))
    _assert_same(together[[1, 2, 4, 6]], encoder.encode([TEXTS[i] for i in (1, 2, 4, 6)]))


def test_instruction_template_is_used():
    default = tiny_encoder("llama")
    custom = tiny_encoder("llama", instruction_template="Instruct: {instruction}\nQuery: ")
    ids, masks, _ = custom.tokenize(["dog"], ["Find it"])
    assert custom.tokenizer.decode(ids[0]).startswith("Instruct: Find it\nQuery: ")
    assert custom.tokenizer.decode([t for t, m in zip(ids[0], masks[0]) if m]).strip() == "dog"
    assert not np.allclose(default.encode("dog", instruction="Find it"), custom.encode("dog", instruction="Find it"))


# ----------------------------------------------------------------- invariance
def _invariance(encoder, texts, instruction=None):
    reference = encoder.encode(texts, batch_size=1, instruction=instruction)
    for batch_size in (3, 16):
        _assert_same(encoder.encode(texts, batch_size=batch_size, instruction=instruction), reference)
    order = np.random.default_rng(0).permutation(len(texts))
    shuffled_instruction = [instruction[i] for i in order] if isinstance(instruction, list) else instruction
    shuffled = encoder.encode([texts[i] for i in order], batch_size=16, instruction=shuffled_instruction)
    _assert_same(shuffled[np.argsort(order)], reference)
    encoder.padding_side = "left"
    try:
        _assert_same(encoder.encode(texts, batch_size=16, instruction=instruction), reference)
    finally:
        encoder.padding_side = "right"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_invariance_tiny(family):
    texts = TEXTS * 3  # 21 texts: batches of 16 are padded and mixed
    instruction = [None, "Represent:"] * 10 + [None]
    _invariance(tiny_encoder(family), texts, instruction)


@pytest.mark.real
def test_invariance_real(smollm2):
    # Every other text has an instruction, so one pass covers both kinds.
    _invariance(smollm2, REAL_TEXTS, instruction=["Retrieve semantically similar text:", None] * 10)


@pytest.mark.real
def test_real_model_is_bidirectional(smollm2):
    assert smollm2.is_bidirectional()
    a, b = smollm2.encode(["The cat sat on the mat", "The cat sat on the dog"], convert_to_tensor=True)
    assert not torch.allclose(a, b)
    ids = smollm2.tokenizer(["The cat sat on the mat", "The cat sat on the dog"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        first = smollm2.model(input_ids=ids).last_hidden_state[:, 0]
    assert (first[0] - first[1]).abs().max() > 1e-3, "the first token does not see the last one"


# ----------------------------------------------------------------- save / load
def test_save_and_load_tiny(tmp_path):
    encoder = tiny_encoder("qwen3", pooling="weighted_mean", max_length=64, instruction_template="Q: {instruction} ")
    encoder.config.stages.append({"stage": "mntp", "recipe": "tiny.yaml"})
    before = encoder.encode(TEXTS, instruction="Find:")
    folder = encoder.save_pretrained(tmp_path / "saved")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    loaded = Encoder.from_pretrained(folder, device="cpu")
    np.testing.assert_allclose(loaded.encode(TEXTS, instruction="Find:"), before, rtol=0, atol=1e-6)
    assert loaded.config == encoder.config
    assert loaded.is_bidirectional()
    # Saving again over an existing folder replaces it.
    encoder.save_pretrained(folder)
    assert Encoder.from_pretrained(folder, pooling="mean", device="cpu").pooling == "mean"


def test_save_causal_tiny(tmp_path):
    encoder = tiny_encoder("gemma3_text", bidirectional=False)
    before = encoder.encode(TEXTS)
    loaded = Encoder.from_pretrained(encoder.save_pretrained(tmp_path / "causal"), device="cpu")
    assert not loaded.is_bidirectional()
    np.testing.assert_allclose(loaded.encode(TEXTS), before, rtol=0, atol=1e-6)


@pytest.mark.real
def test_save_and_load_real(smollm2, tmp_path):
    before = smollm2.encode(REAL_TEXTS[:6])
    loaded = Encoder.from_pretrained(smollm2.save_pretrained(tmp_path / "real"), device="cpu")
    np.testing.assert_allclose(loaded.encode(REAL_TEXTS[:6]), before, rtol=0, atol=1e-5)
    assert loaded.config.base_model == smollm2.config.base_model


# ----------------------------------------------------------------- output options
@pytest.fixture(scope="module")
def tiny():
    return tiny_encoder("llama")


def test_output_options(tiny):
    d = tiny.dimension
    plain = tiny.encode(TEXTS)
    assert plain.shape == (len(TEXTS), d) and plain.dtype == np.float32
    normed = tiny.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(normed, _unit(plain), atol=1e-5)
    cut = tiny.encode(TEXTS, truncate_dim=8, normalize_embeddings=True)
    assert cut.shape == (len(TEXTS), 8)
    np.testing.assert_allclose(cut, _unit(plain[:, :8]), atol=1e-5)  # normalised after truncation
    tensor = tiny.encode(TEXTS, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (len(TEXTS), d)
    single = tiny.encode(TEXTS[0])
    assert single.shape == (d,)
    np.testing.assert_allclose(single, plain[0], atol=1e-5)
    empty = tiny.encode([])
    assert empty.shape == (0, d) and empty.dtype == np.float32
    assert tiny.encode([], truncate_dim=8, convert_to_tensor=True).shape == (0, 8)


@pytest.mark.parametrize(("precision", "dtype", "width"), [
    ("int8", np.int8, 32), ("uint8", np.uint8, 32), ("binary", np.int8, 4), ("ubinary", np.uint8, 4),
])
def test_precisions_equal_sentence_transformers(tiny, precision, dtype, width):
    from sentence_transformers.util import quantize_embeddings as st_quantize

    calibration = tiny.encode(CORPUS)
    plain = tiny.encode(TEXTS)
    out = tiny.encode(TEXTS, precision=precision, calibration_embeddings=calibration)
    assert out.shape == (len(TEXTS), width) and out.dtype == dtype
    np.testing.assert_array_equal(out, st_quantize(plain, precision, calibration_embeddings=calibration))
    # A single text works and gives its row of the batch (the ranges never come from the batch).
    one = tiny.encode(TEXTS[1], precision=precision, calibration_embeddings=calibration)
    np.testing.assert_array_equal(one, out[1])
    if precision == "ubinary":
        np.testing.assert_array_equal(np.unpackbits(out, axis=1), (plain > 0).astype(np.uint8))
    assert tiny.encode([], precision=precision, calibration_embeddings=calibration).shape == (0, width)


def test_calibrated_ranges_are_saved_and_used_for_one_text(tmp_path):
    from sentence_transformers.util import quantize_embeddings as st_quantize

    encoder = tiny_encoder("llama")
    with pytest.raises(Decoder2VecError, match="needs calibrated ranges"):
        encoder.encode(TEXTS[0], precision="int8")
    ranges = encoder.calibrate(CORPUS, normalize_embeddings=True)
    loaded = Encoder.from_pretrained(encoder.save_pretrained(tmp_path / "enc"))
    one = loaded.encode(TEXTS[0], precision="uint8", normalize_embeddings=True)
    floats = encoder.encode(TEXTS[:1], normalize_embeddings=True)
    np.testing.assert_array_equal(one, st_quantize(floats, "uint8", ranges=ranges)[0])
    with pytest.raises(Decoder2VecError, match="normalize_embeddings=True"):
        loaded.encode(TEXTS[0], precision="uint8")


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(("texts", "kwargs", "message"), [
    (["ok", 3, "fine"], {}, r"texts\[1\] is int"),
    (["ok", None], {}, r"texts\[1\] is NoneType"),
    (42, {}, "texts must be a string or a list of strings"),
    (["a", "b"], {"instruction": ["only one"]}, "one entry per text"),
    (["a"], {"instruction": [3]}, r"instruction\[0\] is int"),
    (["a"], {"precision": "int4"}, "unknown precision 'int4'; choose one of: float32, int8, uint8, binary, ubinary"),
    (["a"], {"truncate_dim": 0}, "truncate_dim must be >= 1, got 0"),
    (["a"], {"truncate_dim": 33}, "truncate_dim must be in 1..32, got 33"),
    (["a"], {"batch_size": 0}, "batch_size must be >= 1, got 0"),
    (["a"], {"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
    (["a"], {"batch_size": "8"}, "batch_size must be an integer >= 1, got '8'"),
    (["a"], {"truncate_dim": 8.0}, "truncate_dim must be an integer >= 1 or None, got 8.0"),
    (["a"], {"max_batch_tokens": 0}, "max_batch_tokens must be >= 1, got 0"),
    (["a"], {"max_batch_tokens": -5}, "max_batch_tokens must be >= 1, got -5"),
    (["ok", "bad \ud800 text"], {}, r"texts\[1\] holds a lone surrogate '\\ud800' at character 4"),
    (["ok"], {"instruction": "Find \udfff"}, "instruction holds a lone surrogate '\\\\udfff' at character 5"),
    (["ok", ""], {}, r"texts\[1\] is empty \(1 empty text\(s\) in all\)"),
    ("", {}, r"texts\[0\] is empty"),
    (["ok", " \n\t"], {}, r"texts\[1\] is empty"),
    (["ok"], {"on_empty": "zero"}, "unknown on_empty 'zero'; choose one of: error, skip"),
])
def test_bad_input(tiny, texts, kwargs, message):
    with pytest.raises(Decoder2VecError, match=message):
        tiny.encode(texts, **kwargs)


def test_unknown_pooling():
    with pytest.raises(Decoder2VecError, match="unknown pooling 'max'; choose one of: mean, weighted_mean"):
        tiny_encoder("llama", pooling="max")


def test_truncation_warns_once_with_count():
    encoder = tiny_encoder("llama", max_length=8)
    texts = [TEXTS[0], "dog", TEXTS[2], TEXTS[5]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vectors = encoder.encode(texts, batch_size=1)
    messages = [str(w.message) for w in caught if "truncated" in str(w.message)]
    assert messages == ["3 of 4 texts were longer than max_length=8 tokens and were truncated (an instruction is "
                        "cut first)"]
    assert vectors.shape == (4, encoder.dimension)
    ids, _, _ = encoder.tokenize(texts)
    assert max(map(len, ids)) == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode(["dog", "A cat."])  # short texts: no warning


def test_max_length_capped_for_learned_positions():
    with pytest.warns(UserWarning, match="max_length=1000 exceeds gpt2's 128 positions; using max_length=128"):
        encoder = tiny_encoder("gpt2", max_length=1000)
    assert encoder.max_length == 128
    with pytest.warns(UserWarning, match="1 of 1 texts were longer than max_length=128"):
        assert encoder.encode("word " * 300).shape == (encoder.dimension,)
    # RoPE models may go past their trained length (e.g. with rope_scaling).
    assert tiny_encoder("llama", max_length=1000).max_length == 1000


def test_bad_max_length(tmp_path):
    folder = tiny_encoder("llama").save_pretrained(tmp_path / "tiny")
    with pytest.raises(Decoder2VecError, match="max_length must be >= 1, got 0"):
        Encoder.from_pretrained(folder, max_length=0)
    with pytest.raises(Decoder2VecError, match="unknown pooling 'sum'"):
        Encoder.from_pretrained(folder, pooling="sum")


# ----------------------------------------------------------------- nothing to pool (issue 13 point 2)
@pytest.mark.parametrize("pooling", POOLINGS)
def test_on_empty_skip_returns_the_kept_rows_in_order(pooling):
    encoder = tiny_encoder("llama", pooling=pooling)
    texts = ["", TEXTS[0], "   ", TEXTS[1], "\n"]
    with pytest.warns(UserWarning, match=r"left out 3 empty text\(s\) at input index 0, 2, 4"):
        out = encoder.encode(texts, on_empty="skip", normalize_embeddings=True)
    np.testing.assert_allclose(out, encoder.encode(TEXTS[:2], normalize_embeddings=True), atol=1e-6)
    with pytest.warns(UserWarning, match="left out 1"):
        assert encoder.encode([""], on_empty="skip").shape == (0, encoder.dimension)
    with pytest.raises(Decoder2VecError, match=r"texts\[0\] is empty"):
        encoder.encode(texts, normalize_embeddings=True)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_an_instruction_that_fills_max_length_is_cut_not_the_text(pooling):
    # 12 tokens of room; the instruction alone is longer. The text keeps its tokens (all of
    # them, it is short) and the vector is the text's, never zero, never the instruction's.
    encoder = tiny_encoder("llama", pooling=pooling, max_length=12)
    instruction = "Represent the sentence for retrieval of passages that answer the question " * 3
    text = "Paris is the capital"
    ids, masks, truncated = encoder.tokenize([text], [instruction])
    plain_ids, plain_masks, _ = encoder.tokenize([text])
    assert truncated == 1 and len(ids[0]) == 12
    text_ids = [t for t, m in zip(plain_ids[0], plain_masks[0]) if m]
    assert [t for t, m in zip(ids[0], masks[0]) if m] == text_ids  # every text token kept, and pooled
    assert ids[0][-len(text_ids):] == text_ids  # ... after what fits of the instruction
    with pytest.warns(UserWarning, match=r"truncated \(an instruction is cut first\)"):
        vector = encoder.encode([text], instruction=instruction, normalize_embeddings=True)[0]
    assert np.linalg.norm(vector) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_a_text_longer_than_max_length_drops_the_whole_instruction(pooling):
    encoder = tiny_encoder("llama", pooling=pooling, max_length=6)
    text = " ".join(TEXTS)
    ids, masks, _ = encoder.tokenize([text], ["Find the answer to this question"])
    plain_ids, plain_masks, _ = encoder.tokenize([text])
    assert ids == plain_ids and [list(m) for m in masks] == [list(m) for m in plain_masks]
    assert sum(masks[0]) >= 1
    with pytest.warns(UserWarning):
        out = encoder.encode([text], instruction="Find the answer to this question")
    assert np.abs(out).sum() > 0


# ----------------------------------------------------------------- precision of the forward (issue 15 point 9)
def test_pooling_runs_in_float32_on_bf16_states():
    from decoder2vec.model.pooling import pool

    torch.manual_seed(0)
    states = torch.randn(2, 300, 16).to(torch.bfloat16)
    mask = torch.ones(2, 300, dtype=torch.long)
    pooled = pool(states, mask, mask, "mean")
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, states.float().mean(1), rtol=0, atol=1e-6)


def test_pooling_refuses_a_row_with_nothing_to_pool():
    from decoder2vec.model.pooling import pool

    mask = torch.tensor([[1, 1], [0, 0]])
    with pytest.raises(Decoder2VecError, match="row 1 of the batch has no text token to pool"):
        pool(torch.ones(2, 2, 4), mask, torch.ones(2, 2, dtype=torch.long), "mean")


def test_encoding_forwards_build_no_kv_cache(monkeypatch):
    encoder = tiny_encoder("llama")
    seen = []
    original = encoder.model.forward
    monkeypatch.setattr(encoder.model, "forward", lambda *a, **k: seen.append(k.get("use_cache")) or original(*a, **k))
    encoder.encode(TEXTS[:3])
    encoder.encode(TEXTS[:3], unpadded=True)
    assert seen and all(flag is False for flag in seen)
