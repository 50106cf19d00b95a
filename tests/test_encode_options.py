"""EncodeOptions: the one definition of the encode keywords (issue 24). Keywords and an options
object give the same call; bad values are one line naming the value and the choices."""

import dataclasses
import inspect

import numpy as np
import pytest
from tiny import tiny_encoder

from decoder2vec import Decoder2VecError, EncodeOptions, Encoder
from decoder2vec.corpus import corpus_options, encode_corpus
from decoder2vec.encode_options import NAMES

TEXTS = ["the cat sat on the mat", "a dog", "printing a page from the menu"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_encoder("llama")


@pytest.mark.filterwarnings("ignore:truncate_dim=8")  # the tiny model has no trained Matryoshka dims
def test_keywords_and_options_are_the_same_call(tiny):
    by_keywords = tiny.encode(TEXTS, batch_size=1, normalize_embeddings=True, truncate_dim=8)
    by_options = tiny.encode(TEXTS, EncodeOptions(batch_size=1, normalize_embeddings=True, truncate_dim=8))
    np.testing.assert_array_equal(by_keywords, by_options)
    assert by_keywords.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(by_keywords, axis=1), 1.0, atol=1e-6)
    # Keywords replace the options' values: normalised although the options say not to.
    mixed = tiny.encode(TEXTS, EncodeOptions(truncate_dim=8), normalize_embeddings=True)
    np.testing.assert_allclose(mixed, by_keywords, atol=1e-6)
    tokens = tiny.encode_tokens(TEXTS[1], EncodeOptions(convert_to_tensor=False), normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(tokens["token_embeddings"], axis=1), 1.0, atol=1e-6)


def test_signatures_show_the_fields():
    """help() and inspect see every field as a keyword, with its default (evaluation's adapter reads
    `instruction` there)."""
    for function in (Encoder.encode, Encoder.encode_tokens, encode_corpus):
        params = inspect.signature(function).parameters
        assert set(NAMES) <= set(params), function
        assert params["batch_size"].default == 32 and params["max_batch_tokens"].default == 16384


@pytest.mark.parametrize(("keywords", "message"), [
    ({"batchsize": 8}, "unknown encode option 'batchsize'; choose one of: instruction, batch_size, "
                       "max_batch_tokens, normalize_embeddings, truncate_dim, precision, calibration_embeddings, "
                       "on_empty, show_progress_bar, convert_to_tensor, unpadded, output_value"),
    ({"precision": "int4"}, "unknown precision 'int4'; choose one of: float32, int8, uint8, binary, ubinary"),
    ({"on_empty": "zero"}, "unknown on_empty 'zero'; choose one of: error, skip"),
    ({"output_value": "tokens"}, "unknown output_value 'tokens'; choose one of: sentence_embedding, token_embeddings"),
    ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ({"max_batch_tokens": 2.5}, "max_batch_tokens must be an integer >= 1 or None, got 2.5"),
    ({"truncate_dim": True}, "truncate_dim must be an integer >= 1 or None, got True"),
    ({"normalize_embeddings": "yes"}, "normalize_embeddings must be True or False, got 'yes'"),
    ({"unpadded": 1}, "unpadded must be True or False or None, got 1"),
    ({"instruction": 3}, "instruction must be a string, None, or a list with one entry per text; got int"),
])
def test_bad_values_are_one_line(keywords, message):
    with pytest.raises(Decoder2VecError) as info:
        EncodeOptions.of(**keywords)
    assert str(info.value) == message


def test_options_are_frozen_and_checked_on_replace():
    options = EncodeOptions(batch_size=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 4
    assert options.replace(batch_size=4).batch_size == 4 and options.batch_size == 8
    with pytest.raises(Decoder2VecError, match="batch_size must be >= 1, got 0"):
        options.replace(batch_size=0)
    with pytest.raises(Decoder2VecError, match="options must be an EncodeOptions, got dict"):
        EncodeOptions.of({"batch_size": 8})


@pytest.mark.parametrize(("keywords", "message"), [
    ({"instruction": ["a", "b"]}, "a corpus run takes one instruction string for every row, got list"),
    ({"convert_to_tensor": True}, "convert_to_tensor=True does not apply to a corpus run"),
    ({"output_value": "token_embeddings"}, "output_value='token_embeddings' does not apply to a corpus run"),
    ({"calibration_embeddings": np.ones((2, 4))}, "calibration_embeddings does not apply to a corpus run"),
])
def test_a_corpus_refuses_what_it_cannot_write(keywords, message):
    with pytest.raises(Decoder2VecError, match=message):
        corpus_options(**keywords)
