"""Token embeddings (Encoder.encode(output_value="token_embeddings")), word aggregation (model/words.py)
and the word-role labels of the LibreOffice help markup (data/markup.py)."""

import os

import numpy as np
import pytest
import torch
from tiny import FAMILIES, tiny_encoder

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.model.words import aggregate, encode_words, join_words, word_spans

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "  Paris is the capital of France,  Berlin of Germany.  ",
    "a",
    "Caf\u00e9 na\u00efve \u2014 \u00e6bler og \u00f8l: 3.5 kr.",
    "Bidirectional attention lets every token see every other token, which decoders never do.",
]
INSTRUCTIONS = (None, "Retrieve passages that answer the question")


def _tokens(encoder, texts, **options):
    return encoder.encode(texts, output_value="token_embeddings", **options)


def _check_offsets(encoder, text, out):
    """Each token's offsets cut out of the text exactly what the token spells (its decoded text,
    less the spaces the tokenizer trims from offsets), and together the tokens cover every
    non-space character of the text once, in order."""
    offsets = out["offsets"]
    assert offsets.dtype == np.int64 and offsets.shape == (len(out["input_ids"]), 2)
    assert (offsets[:, 0] >= 0).all() and (offsets[:, 1] <= len(text)).all() and (offsets[:, 0] <= offsets[:, 1]).all()
    pieces = [text[s:e] for s, e in offsets]
    for token_id, piece in zip(out["input_ids"], pieces):
        spelled = encoder.tokenizer.decode([int(token_id)])
        if "\ufffd" not in spelled:  # a byte-level token holding part of a character spells nothing alone
            assert piece.strip() == spelled.strip(), (piece, spelled)
    # In order, and every non-space character covered (byte-level tokens holding parts of one
    # character both cover it, so ranges may overlap by that character).
    assert (np.diff(offsets[:, 0]) >= 0).all() and (np.diff(offsets[:, 1]) >= 0).all()
    covered = {i for s, e in offsets for i in range(s, e)}
    assert covered >= {i for i, c in enumerate(text) if not c.isspace()}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_offsets_are_the_texts_own_tokens(family):
    encoder = tiny_encoder(family)
    special = set(encoder.tokenizer.all_special_ids)
    for instruction in INSTRUCTIONS:
        outs = _tokens(encoder, TEXTS, instruction=instruction)
        assert len(outs) == len(TEXTS)
        for text, out in zip(TEXTS, outs):
            _check_offsets(encoder, text, out)
            assert not special & set(out["input_ids"].tolist())
            assert out["token_embeddings"].dtype == np.float32
            assert out["token_embeddings"].shape == (len(out["offsets"]), encoder.dimension)
            # The tokens the sentence path pools (tokenize's offset mask): no instruction token.
            ids, masks, _ = encoder.tokenize([text], [instruction])
            assert out["input_ids"].tolist() == [t for t, m in zip(ids[0], masks[0]) if m]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_token_vectors_are_the_plain_forwards_hidden_states(family):
    """One text, the transformers model called directly (no decoder2vec batching): the token
    vectors are its last hidden states at the text's positions."""
    encoder = tiny_encoder(family)
    text, instruction = TEXTS[1], INSTRUCTIONS[1]
    out = _tokens(encoder, text, instruction=instruction)
    ids, mask, _ = encoder.tokenize([text], [instruction])
    with torch.no_grad():
        states = encoder.model(input_ids=torch.tensor(ids), use_cache=False).last_hidden_state[0]
    np.testing.assert_allclose(out["token_embeddings"], states[torch.from_numpy(mask[0])].numpy(), atol=1e-5)
    # and their mean is the mean-pooled sentence vector
    np.testing.assert_allclose(out["token_embeddings"].mean(0), encoder.encode(text, instruction=instruction),
                               atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3_text"])
def test_token_vectors_do_not_depend_on_the_batch(family):
    encoder = tiny_encoder(family)
    texts = TEXTS * 3
    instruction = [None, "Represent:"] * 7 + [None]
    alone = [_tokens(encoder, t, instruction=i) for t, i in zip(texts, instruction)]
    for batch_size in (4, 16):
        together = _tokens(encoder, texts, instruction=instruction, batch_size=batch_size)
        for a, b in zip(alone, together):
            np.testing.assert_array_equal(a["offsets"], b["offsets"])
            np.testing.assert_allclose(a["token_embeddings"], b["token_embeddings"], atol=1e-5)


def test_token_options():
    encoder = tiny_encoder("llama")
    single = _tokens(encoder, TEXTS[0], convert_to_tensor=True)
    assert isinstance(single, dict) and isinstance(single["token_embeddings"], torch.Tensor)
    unit = _tokens(encoder, TEXTS[0], normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(unit["token_embeddings"], axis=1), 1.0, atol=1e-5)
    with pytest.warns(UserWarning, match="left out 1 empty"):
        skipped = _tokens(encoder, ["a dog", " ", "a cat"], on_empty="skip")
    assert [encoder.tokenizer.decode(o["input_ids"]) for o in skipped] == ["a dog", "a cat"]
    with pytest.warns(UserWarning, match="left out 1 empty"):
        assert _tokens(encoder, " ", on_empty="skip") == []
    with pytest.raises(Decoder2VecError, match=r"texts\[0\] is empty"):
        _tokens(encoder, "")
    short = tiny_encoder("llama", max_length=6)
    with pytest.warns(UserWarning, match="1 of 1 texts were longer than max_length=6"):
        cut = _tokens(short, TEXTS[0], instruction="Find it")
    full = _tokens(encoder, TEXTS[0])
    assert len(cut["input_ids"]) >= 1
    np.testing.assert_array_equal(cut["offsets"], full["offsets"][:len(cut["offsets"])])


@pytest.mark.parametrize("options, message", [
    ({"precision": "int8"}, "precision='int8' applies to sentence embeddings; token embeddings are float32"),
    ({"truncate_dim": 8}, "truncate_dim=8 applies to sentence embeddings"),
    ({"output_value": "tokens"}, "output_value"),
])
def test_token_bad_options(options, message):
    encoder = tiny_encoder("llama")
    options = {"output_value": "token_embeddings", **options}
    with pytest.raises(Decoder2VecError, match=message):
        encoder.encode(["a dog"], **options)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_exported_backends_give_the_same_token_vectors(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("DECODER2VEC_CACHE", str(tmp_path / "cache"))
    encoder = tiny_encoder("llama")
    exported = Encoder.from_pretrained(encoder.save_pretrained(tmp_path / "tiny"), backend=backend)
    for a, b in zip(_tokens(encoder, TEXTS, instruction="Find"), _tokens(exported, TEXTS, instruction="Find")):
        np.testing.assert_array_equal(a["offsets"], b["offsets"])
        np.testing.assert_allclose(a["token_embeddings"], b["token_embeddings"], atol=1e-4)


@pytest.mark.real
def test_real_tokenizer_offsets(smollm2):
    for instruction in INSTRUCTIONS:
        for text, out in zip(TEXTS, _tokens(smollm2, TEXTS, instruction=instruction)):
            _check_offsets(smollm2, text, out)


# ----------------------------------------------------------------- words
def test_word_spans_and_join():
    np.testing.assert_array_equal(word_spans("  New York,  NY "), [[2, 5], [6, 11], [13, 15]])
    text, spans = join_words(["EU", "rejects", "German", "call"])
    assert text == "EU rejects German call"
    assert [text[s:e] for s, e in spans] == ["EU", "rejects", "German", "call"]
    with pytest.raises(Decoder2VecError, match=r"words\[1\] = 'a b': a word must be non-empty"):
        join_words(["x", "a b"])


def test_aggregate_first_and_mean():
    # "unhappy cats" as tokens "un" "happy" " cats" (+ an empty whitespace token)
    vectors = np.array([[1, 0], [3, 4], [10, 10], [99, 99]], dtype=np.float32)
    offsets = np.array([[0, 2], [2, 7], [8, 12], [12, 12]])
    spans = word_spans("unhappy cats")
    np.testing.assert_array_equal(aggregate(vectors, offsets, spans, "first"), [[1, 0], [10, 10]])
    np.testing.assert_array_equal(aggregate(vectors, offsets, spans, "mean"), [[2, 2], [10, 10]])
    # a token crossing a word boundary ("a." with words "a" and ".") counts for both
    np.testing.assert_array_equal(aggregate(np.array([[2.0, 4.0]]), [[0, 2]], [[0, 1], [1, 2]], "mean"),
                                  [[2, 4], [2, 4]])
    with pytest.raises(Decoder2VecError, match=r"word 1 \(characters 8..12\) has no token"):
        aggregate(vectors[:2], offsets[:2], spans)
    with pytest.raises(Decoder2VecError, match="word aggregation"):
        aggregate(vectors, offsets, spans, "max")


def test_encode_words_on_a_model():
    encoder = tiny_encoder("llama")
    text = "The quick brown fox"
    words = encode_words(encoder, [text], how="first")[0]
    tokens = _tokens(encoder, text)
    assert words.shape == (4, encoder.dimension)
    # "quick" starts at character 4: its first token is the one whose offsets start there
    first_of_quick = [i for i, (s, _) in enumerate(tokens["offsets"]) if s == 4][0]
    np.testing.assert_array_equal(words[1], tokens["token_embeddings"][first_of_quick])
    means = encode_words(encoder, [text], [np.array([[0, 9]])])[0]
    inside = [i for i, (s, e) in enumerate(tokens["offsets"]) if s < 9 and e > 0 and e > s]
    np.testing.assert_allclose(means[0], tokens["token_embeddings"][inside].mean(0), atol=1e-6)


# ----------------------------------------------------------------- LibreOffice markup labels
# Real help HTML (en-US text/shared/find_toolbar.html; de's Calc load options and Basic types),
# whitespace and surrounding page trimmed; the macOS/default key variants are hidden, as there.
PAGE = """<html><head><title>Find Bar</title></head><body><div id="DisplayArea">
<h1 id="hd_id701641581066778" dir="auto">Find Bar</h1>
<p id="par_id3147762" class="paragraph" dir="auto">The <span class="menuitem">Find</span> toolbar can be used to
quickly search the contents of LibreOffice documents.</p>
<div class="notetext"><p id="par_id211641581251728" dir="auto">Use the shortcut <span id="swlnsystextswritermain0202xml_1"
class="switchinline"><span hidden="true" id="MACtextswritermain0202xml_1" class="MAC"><span class="keycode">Command</span>
</span><span hidden="true" id="defaulttextswritermain0202xml_1"><span class="keycode">Ctrl</span></span></span><span
class="keycode"> + F</span> to quickly open the <span class="menuitem">Find</span> toolbar.</p></div>
<p id="par_id761641582194558" class="paragraph" dir="auto">Opens the <a target="_top"
href="en-US/text/swriter/guide/finding.html">Find and Replace</a> dialog.</p>
<p id="par_id3256155" class="listitem" dir="auto"><span class="emph">Nie neu berechnen</span> \u2013 Keine Formel.</p>
<p id="par_id0709201509091312" class="ul_item" dir="auto"><span class="literal">string</span>: Alphanumerische Werte;</p>
<p id="par_id3150131" class="tablecontentintable" dir="auto">                     <span class="input">5</span></p>
<p class="paragraph">No id: not a help paragraph.</p>
</div></body></html>"""


def test_markup_labels_from_a_real_page():
    from decoder2vec.data.markup import page_words
    from decoder2vec.data.sources import parse_help_page

    paragraphs = page_words(PAGE)
    # the same paragraph texts as the training data reads (data/sources.py)
    assert [p["text"] for p in paragraphs] == parse_help_page(PAGE)["paragraphs"]
    labelled = [list(zip((p["text"][s:e] for s, e in p["spans"]), p["labels"])) for p in paragraphs]
    O = "O"
    assert labelled == [
        [("Find", O), ("Bar", O)],
        [("The", O), ("Find", "menuitem"), ("toolbar", O), ("can", O), ("be", O), ("used", O), ("to", O),
         ("quickly", O), ("search", O), ("the", O), ("contents", O), ("of", O), ("LibreOffice", O),
         ("documents.", O)],
        [("Use", O), ("the", O), ("shortcut", O), ("+", "keycode"), ("F", "keycode"), ("to", O), ("quickly", O),
         ("open", O), ("the", O), ("Find", "menuitem"), ("toolbar.", O)],
        [("Opens", O), ("the", O), ("Find", "link"), ("and", "link"), ("Replace", "link"), ("dialog.", O)],
        [("Nie", "emph"), ("neu", "emph"), ("berechnen", "emph"), ("\u2013", O), ("Keine", O), ("Formel.", O)],
        [("string:", "literal"), ("Alphanumerische", O), ("Werte;", O)],
        [("5", "input")],
    ]


# ----------------------------------------------------------------- CoNLL-2003 and the probe
CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
to TO B-VP O
boycott VB I-VP O
British JJ B-NP B-MISC
lamb NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""


@pytest.fixture
def conll_folder(tmp_path):
    (tmp_path / "train.txt").write_text(CONLL * 20, encoding="utf-8")  # enough for a regularised probe
    (tmp_path / "test.txt").write_text(CONLL, encoding="utf-8")
    return tmp_path


def _word_probe():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "word_probe.py"
    spec = importlib.util.spec_from_file_location("word_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conll_reader_and_hub_errors(conll_folder, monkeypatch):
    from decoder2vec.data.conll import conll2003, read_conll

    sentences = conll2003("test", conll_folder)
    assert sentences == read_conll(conll_folder / "test.txt")
    assert [len(w) for w, _ in sentences] == [9, 2, 2]
    assert sentences[1] == (["Peter", "Blackburn"], ["B-PER", "I-PER"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Decoder2VecError, match=r"^CoNLL-2003 train: eriktks/conll2003 is not a local folder and "
                                               r"the hub is offline"):
        conll2003("train")
    with pytest.raises(Decoder2VecError, match="CoNLL-2003 split"):
        conll2003("dev", conll_folder)
    (conll_folder / "bad.txt").write_text("EU\n", encoding="utf-8")
    with pytest.raises(Decoder2VecError, match=r"bad.txt:1: expected 'word ... TAG'"):
        read_conll(conll_folder / "bad.txt")


def test_probe_on_conll(conll_folder, monkeypatch):
    """The benchmark's CoNLL path end to end on a local file: the word-form probe trained and
    tested on the same sentences (repeated for training) recalls every tag (macro-F1 1.0); a tiny model's word vectors
    go through the same probe."""
    probe = _word_probe()
    monkeypatch.setattr(probe, "MIN_SUPPORT", 1)
    train, test = probe.conll_task(str(conll_folder), 100, 10)
    assert len(train) == 60 and len(test) == 3
    assert train[0][0] == "EU rejects German call to boycott British lamb ."
    result = probe.probe(probe.word_form, train, test)
    assert result["train_words"] == 260 and result["test_words"] == 13
    assert list(result["per_label"]) == ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    assert result["macro_f1"] == 1.0
    tiny = probe.probe(probe.decoder2vec_words(tiny_encoder("llama"), "first"), train, test)
    assert tiny["test_words"] == 13 and list(tiny["per_label"]) == list(result["per_label"])


@pytest.mark.parametrize("chat_format", ["llama-2", "qwen"])
def test_chat_format_markers_are_not_text_tokens(chat_format):
    """LLM2Vec's chat formats wrap the input; the token embeddings are still only the text's."""
    encoder = tiny_encoder("llama", chat_format=chat_format)
    for instruction in INSTRUCTIONS:
        for text, out in zip(TEXTS, _tokens(encoder, TEXTS, instruction=instruction)):
            _check_offsets(encoder, text, out)
            assert encoder.tokenizer.decode(out["input_ids"]).strip() == text.strip()
