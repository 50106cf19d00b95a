"""LLM2Vec-compatible pooling (`pool_span: llm2vec`) and chat formats (`chat_format`), against the
reference llm2vec 0.2.3's rules written out here from its code (LLM2Vec.tokenize,
LLM2Vec.prepare_for_tokenization, E5Data.py, run_supervised.py / run_simcse.py's collators)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from decoder2vec import Encoder
from decoder2vec.model.chat_format import FORMATS
from decoder2vec.data.paper import E5Pair
from decoder2vec.errors import Decoder2VecError
from decoder2vec.evaluation import llm2vec_protocol
from decoder2vec.folder.config import EncoderConfig
from decoder2vec.training import train
from decoder2vec.training.config import make_config
from decoder2vec.training.simcse import SimCSEStage
from decoder2vec.training.supervised import SupervisedStage
from test_training_support import FAST, encoder_folder, pairs_file
from tiny import FAMILIES, tiny_encoder

SEP = "!@#$%^&*()"  # llm2vec's instruction/text separator
# LLM2Vec.prepare_for_tokenization (llm2vec 0.2.3), one template per format, written as it is there.
REFERENCE_TEMPLATES = {
    "llama-3": lambda text: "<|start_header_id|>user<|end_header_id|>\n\n" + text.strip() + "<|eot_id|>",
    "mistral": lambda text: "[INST] " + text.strip() + " [/INST]",
    "llama-2": lambda text: "[INST] " + text.strip() + " [/INST]",
    "gemma": lambda text: "<bos><start_of_turn>user\n" + text.strip() + "<end_of_turn>",
    "qwen": lambda text: "<|im_start|>user\n" + text.strip() + "<|im_end|>",
}
INSTRUCTION = "Given a premise, retrieve a hypothesis that is entailed by the premise"


def view(encoder: Encoder, **changes) -> Encoder:
    """The same model with other config values (the session's SmolLM2 Encoder is left as it is)."""
    return Encoder(encoder.model, encoder.tokenizer, dataclasses.replace(encoder.config, **changes))


# ------------------------------------------------------------------ pool_span: llm2vec
@pytest.mark.real
def test_llm2vec_span_pools_the_instructions_semicolon_where_smollm2_merges_differently(smollm2):
    """SmolLM2's BPE reads "Someone" alone as two tokens but "; Someone" as ";" + " Someone":
    LLM2Vec pools the last len(tokens of the text alone) = 2 positions, the ";" included."""
    tok = smollm2.tokenizer
    text = "Someone performs music for an audience."
    full = f"{INSTRUCTION}; {text}"
    assert tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])[:2] == ["Some", "one"]
    full_ids = tok(full)["input_ids"]  # LLM2Vec tokenizes the joined string with special tokens
    n = len(tok(text, add_special_tokens=False)["input_ids"])  # ... and the text alone without
    expected = [False] * (len(full_ids) - n) + [True] * n

    ids, masks, _ = view(smollm2, pool_span="llm2vec", instruction_template="{instruction}; ").tokenize(
        [text], [INSTRUCTION])
    assert ids[0] == full_ids and masks[0].tolist() == expected
    pooled = tok.convert_ids_to_tokens([t for t, m in zip(ids[0], masks[0]) if m])
    assert pooled[:2] == [";", "ĠSomeone"]
    # offsets (decoder2vec's default) pools exactly the text: no ";"
    _, masks, _ = view(smollm2, instruction_template="{instruction}; ").tokenize([text], [INSTRUCTION])
    assert [t for t, m in zip(ids[0], masks[0]) if m] == ids[0][len(ids[0]) - n + 1:]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_llm2vec_span_encodes_the_mean_of_the_last_n_positions(family):
    """encode (the backend's path) pools the llm2vec positions: the mean of the model's last hidden
    states over the last n tokens, n = the text's token count alone, computed here from the model."""
    encoder = tiny_encoder(family)
    encoder = view(encoder, pool_span="llm2vec", instruction_template="{instruction}; ")
    tok, text, instruction = encoder.tokenizer, "Berlin the capital of Germany.", "Retrieve passages"
    full = tok(f"{instruction}; {text}")["input_ids"]
    n = len(tok.tokenize(text))
    with torch.no_grad():
        states = encoder.model(input_ids=torch.tensor([full]), attention_mask=torch.ones(1, len(full))).last_hidden_state
    expected = states[0, -n:].float().mean(0).numpy()
    got = encoder.encode([text], instruction=instruction)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # Without an instruction both rules pool the whole text.
    a = encoder.tokenize([text])[1][0]
    b = view(encoder, pool_span="offsets").tokenize([text])[1][0]
    assert a.tolist() == b.tolist() and a.sum() == n


def test_pool_span_and_chat_format_are_checked_and_saved(tmp_path):
    with pytest.raises(Decoder2VecError, match="pool_span.*offsets, llm2vec.*'last'"):
        EncoderConfig.from_dict({"pool_span": "last"}, source="f.json")
    with pytest.raises(Decoder2VecError, match="unknown chat format 'chatml'"):
        EncoderConfig.from_dict({"chat_format": "chatml"}, source="f.json")
    with pytest.raises(Decoder2VecError, match="unknown chat_format 'llama3'"):
        make_config({"stage": "supervised", "data": ["x"], "output_dir": "o", "chat_format": "llama3"})
    encoder = view(tiny_encoder("llama"), pool_span="llm2vec", chat_format="qwen")
    encoder.save_pretrained(tmp_path / "e")
    loaded = Encoder.from_pretrained(str(tmp_path / "e"))
    assert (loaded.config.pool_span, loaded.config.chat_format) == ("llm2vec", "qwen")


# ------------------------------------------------------------------ chat formats in training
class Spy:
    """A tokenizer that records the strings it is called with."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, []

    def __call__(self, texts, **kwargs):
        self.calls.append((list(texts), kwargs.get("add_special_tokens", True)))
        return self.tokenizer(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def _stage(cls, tmp_path, **values):
    config = make_config({"model": str(encoder_folder(tmp_path)), "output_dir": str(tmp_path / "out"), **FAST,
                          **values})
    stage = cls(config)
    stage.load()
    stage.view.tokenizer = Spy(stage.view.tokenizer)
    return stage


@pytest.mark.parametrize("name", sorted(REFERENCE_TEMPLATES))
def test_supervised_training_tokenizes_llm2vecs_chat_strings(tmp_path, name):
    """The strings the supervised stage tokenizes (the joined string, and the text alone that
    decides the pooled span) are those run_supervised.py's collator hands LLM2Vec.tokenize."""
    stage = _stage(SupervisedStage, tmp_path, stage="supervised", data=["x"], batch_per_task=False,
                   instruction_template="{instruction}; ", pool_span="llm2vec", chat_format=name,
                   train_max_length=128)
    rows = [E5Pair(" a query with spaces  ", "its document. ", ["a negative"], "msmarco", "Retrieve passages", None),
            E5Pair("premise", "hypothesis", ["other"], "allnli_split2", INSTRUCTION, INSTRUCTION)]
    stage.collate(rows)
    # E5Data.py: queries "instruction; " + SEP + text; documents SEP + text (both sides for NLI).
    reference = [f"Retrieve passages; {SEP} a query with spaces  ", f"{INSTRUCTION}; {SEP}premise",
                 f"{SEP}its document. ", f"{INSTRUCTION}; {SEP}hypothesis",
                 f"{SEP}a negative", f"{INSTRUCTION}; {SEP}other"]
    wrapped = [REFERENCE_TEMPLATES[name](t) for t in reference]
    (joined, specials), (alone, no_specials) = stage.view.tokenizer.calls
    assert joined == [w.replace(SEP, "") for w in wrapped] and specials
    assert alone == [w.split(SEP)[1] for w in wrapped] and not no_specials
    assert stage.encoder_config.chat_format == name  # what the saved folder will say


def test_simcse_tokenizes_bare_sentences_but_saves_the_chat_format(tmp_path):
    """run_simcse.py's collator does not call prepare_for_tokenization; the model still reads the
    chat format at inference, so the folder keeps it."""
    stage = _stage(SimCSEStage, tmp_path, stage="simcse", data=["x"], chat_format="llama-3")
    stage.collate(["One sentence here.", "Another sentence there."])
    assert stage.view.tokenizer.calls == [(["One sentence here.", "Another sentence there."], True)]
    assert stage.encoder_config.chat_format == "llama-3"


def test_a_trained_folder_records_the_recipes_pool_span_and_chat_format(tmp_path):
    out = train({"stage": "supervised", "model": str(encoder_folder(tmp_path)), "data": [str(pairs_file(tmp_path))],
                 "output_dir": str(tmp_path / "sup"), "pool_span": "llm2vec", "chat_format": "mistral",
                 "eval_examples": 0}, **{**FAST, "max_steps": 1})
    saved = json.loads((out / "decoder2vec_config.json").read_text())
    assert (saved["pool_span"], saved["chat_format"]) == ("llm2vec", "mistral")
    # The next stage keeps them (null in its recipe), "none" turns the chat format off.
    stage = _stage(SupervisedStage, tmp_path, stage="supervised", data=["x"], model=str(out))
    assert (stage.encoder_config.pool_span, stage.encoder_config.chat_format) == ("llm2vec", "mistral")
    stage = _stage(SupervisedStage, tmp_path, stage="supervised", data=["x"], model=str(out), chat_format="none")
    assert stage.encoder_config.chat_format is None


def test_encoding_with_a_chat_format_reads_llm2vecs_string_and_pools_its_tail():
    """Encoder.encode wraps as LLM2Vec._encode does (its _convert_to_str joins "instruction " + SEP)."""
    encoder = view(tiny_encoder("llama"), chat_format="llama-2", pool_span="llm2vec")
    spy = encoder.tokenizer = Spy(encoder.tokenizer)
    encoder.tokenize(["The first text. ", "  second"], ["Retrieve passages:", None])
    reference = [REFERENCE_TEMPLATES["llama-2"](t) for t in (f"Retrieve passages: {SEP}The first text. ", f"{SEP}  second")]
    assert spy.calls == [([r.replace(SEP, "") for r in reference], True), ([r.split(SEP)[1] for r in reference], False)]
    assert set(FORMATS) == set(REFERENCE_TEMPLATES)


# ------------------------------------------------------------------ the mteb protocol's wrapping
def test_a_folder_with_its_own_chat_format_is_not_wrapped_again_by_the_mteb_protocol():
    hub = "mistralai/Mistral-7B-Instruct-v0.2"
    assert llm2vec_protocol.chat_format(EncoderConfig(base_model=hub)) == ("[INST] ", " [/INST]")
    assert llm2vec_protocol.chat_format(EncoderConfig(base_model=hub, chat_format="mistral")) is None
    assert llm2vec_protocol.chat_format_name(EncoderConfig(base_model=hub)) == "mistral"
    assert llm2vec_protocol.chat_format_name(EncoderConfig(base_model="x/y", chat_format="qwen")) == "qwen"
    assert llm2vec_protocol.chat_format_name(EncoderConfig(base_model="x/y")) is None


@pytest.mark.parametrize("instruction", ["Retrieve semantically similar text:", None])
def test_encoding_with_chat_format_equals_the_protocols_wrapped_strings(instruction):
    """chat_format in the config gives the vectors the mteb adapter's wrap() path gives, so the
    adapter can hand the format to the Encoder instead of rewriting texts."""
    texts = ["A cat sits. ", "  Dogs bark."]
    plain = tiny_encoder("llama")
    wrapped, ins, template = llm2vec_protocol.wrap(texts, instruction, llm2vec_protocol.CHAT_FORMATS[
        "mistralai/Mistral-7B-Instruct-v0.2"])
    expected = view(plain, instruction_template=template).encode(wrapped, instruction=ins)
    got = view(plain, chat_format="mistral", instruction_template="{instruction} ").encode(texts, instruction=instruction)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
