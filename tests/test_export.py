"""sentence-transformers export: SentenceTransformer(folder) gives Encoder.encode's vectors."""

import json

import numpy as np
import pytest
from tiny import tiny_encoder

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.cli import main
from decoder2vec.results import read_results
from decoder2vec.folder.export import (
    export_sentence_transformers,
    push_to_hub,
    sentence_transformers_gaps,
)

TEXTS = ["The quick brown fox jumps over the lazy dog.", "A dog.", "Paris is the capital of France."]
INSTRUCTION = "Retrieve passages that answer the question:"


def st_model(folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def assert_same_vectors(encoder, st, texts, **kwargs):
    st_kwargs = {"prompt_name": "q"} if "instruction" in kwargs else {}
    ours = encoder.encode(texts, normalize_embeddings=True, instruction=kwargs.get("instruction"))
    theirs = st.encode(texts, normalize_embeddings=True, **st_kwargs)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines


# gemma2 needs eager attention (a quirk carried in sentence_bert_config.json); gpt2 and gemma3
# are the families whose attention classes differ most from Llama's.
@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2", "gemma3_text", "gpt2"])
def test_sentence_transformers_matches_encoder(family, tmp_path):
    encoder = tiny_encoder(family)
    out = export_sentence_transformers(encoder, tmp_path / "st", instructions={"q": INSTRUCTION})
    st = st_model(out)
    assert_same_vectors(encoder, st, TEXTS)  # a padded batch
    assert_same_vectors(encoder, st, TEXTS[:1])  # a batch of one: no padding, no mask
    # Bidirectional for real: the causal model gives other vectors for the unpadded batch of one.
    causal = Encoder(encoder.model, encoder.tokenizer, type(encoder.config)(bidirectional=False))
    theirs = st.encode(TEXTS[:1], normalize_embeddings=True)
    assert float((causal.encode(TEXTS[:1], normalize_embeddings=True) * theirs).sum()) < 0.9999
    # The folder still loads as an Encoder with the same vectors.
    again = Encoder.from_pretrained(out)
    np.testing.assert_allclose(again.encode(TEXTS), Encoder(encoder.model, encoder.tokenizer).encode(TEXTS),
                               atol=1e-5)


@pytest.mark.parametrize("pooling", ["weighted_mean", "last_token", "first_token"])
def test_poolings_match(pooling, tmp_path):
    encoder = tiny_encoder("llama", pooling=pooling)
    out = export_sentence_transformers(encoder, tmp_path / "st", instructions={"q": INSTRUCTION})
    assert_same_vectors(encoder, st_model(out), TEXTS)


def test_prompts_exclude_the_instruction(tmp_path):
    encoder = tiny_encoder("llama")
    out = export_sentence_transformers(encoder, tmp_path / "st", instructions={"q": INSTRUCTION})
    config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert config["prompts"] == {"q": encoder.config.instruction_template.format(instruction=INSTRUCTION)}
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["include_prompt"] is False
    assert sentence_transformers_gaps(encoder, {"q": INSTRUCTION}) == []
    assert_same_vectors(encoder, st_model(out), TEXTS, instruction=INSTRUCTION)


def test_chat_format_and_llm2vec_pool_span_are_named_as_gaps():
    encoder = tiny_encoder("llama")
    encoder.config.chat_format, encoder.config.pool_span = "llama-3", "llm2vec"
    gaps = sentence_transformers_gaps(encoder, {"q": INSTRUCTION})
    assert [g.split(" ")[0] for g in gaps[:2]] == ["chat_format", "pool_span"]
    assert all("--exact" in g for g in gaps[:2])


def test_save_pretrained_folder_becomes_loadable(tmp_path):
    encoder = tiny_encoder("qwen2")
    folder = encoder.save_pretrained(tmp_path / "enc")  # writes the sentence-transformers files too
    assert_same_vectors(encoder, st_model(folder), TEXTS)


def test_model_card(tmp_path):
    encoder = tiny_encoder("llama")
    encoder.config.base_model = "HuggingFaceTB/SmolLM2-135M-Instruct"
    encoder.config.stages = [{"stage": "mntp", "recipe": "recipes/smollm2-mntp.yaml", "steps": 100},
                             {"stage": "simcse", "recipe": "recipes/smollm2-simcse.yaml"}]
    results = {"tasks": {"STS-B": {"main_score": 0.71234, "language": "en", "type": "STS"}},
               "averages": {"STS": 0.71234}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    out = export_sentence_transformers(encoder, tmp_path / "st", tmp_path / "results.json", model_name="me/enc")
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: sentence-transformers")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "| 1 | mntp | recipes/smollm2-mntp.yaml | steps=100 |" in card
    assert "| 2 | simcse |" in card
    assert "| STS-B | STS | en | 0.7123 |" in card
    assert 'SentenceTransformer("me/enc")' in card and "decoder2vec serve me/enc" in card


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(Decoder2VecError, match="results file not found"):
        read_results(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(Decoder2VecError, match="is not JSON"):
        read_results(tmp_path / "bad.json")
    encoder = tiny_encoder("llama")
    encoder.config.pooling = "latent_attention"
    with pytest.raises(Decoder2VecError, match="latent_attention"):
        export_sentence_transformers(encoder, tmp_path / "st")
    assert not (tmp_path / "st").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Decoder2VecError, match="HF_HUB_OFFLINE"):
        push_to_hub(tmp_path, "me/enc")
    # Without the flag, an unreachable hub is a clear error too (the network is simulated as down).
    import httpx
    from huggingface_hub import HfApi

    monkeypatch.delenv("HF_HUB_OFFLINE")

    def unreachable(*args, **kwargs):
        raise httpx.ConnectError("Name or service not known")

    monkeypatch.setattr(HfApi, "create_repo", unreachable)
    with pytest.raises(Decoder2VecError, match="cannot reach the Hugging Face hub"):
        push_to_hub(tmp_path, "me/enc")


def test_cli_export(tmp_path, capsys):
    folder = tiny_encoder("llama").save_pretrained(tmp_path / "enc")
    out = tmp_path / "st"
    code = main(["export", str(folder), "--to", "sentence-transformers", str(out), "--instructions", "q=Find it:"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "config_sentence_transformers.json").read_text())["prompts"] == {"q": "Find it: "}
    assert main(["export", str(folder), "--to", "gguf", str(out)]) == 2
    assert "unknown export format 'gguf'" in capsys.readouterr().err
    assert main(["export", str(folder), "--to", "sentence-transformers", str(out), "--instructions", "oops"]) == 2


@pytest.mark.real
def test_real_smollm2_export(smollm2, tmp_path):
    out = export_sentence_transformers(smollm2, tmp_path / "st")
    st = st_model(out)
    assert_same_vectors(smollm2, st, TEXTS)
    assert_same_vectors(smollm2, st, TEXTS[:1])
    # SmolLM2's BPE merges the template's trailing space into the text's first token, which ST's
    # prompt-length pooling cannot see: the export must say so rather than claim exactness.
    gaps = sentence_transformers_gaps(smollm2)
    assert any("prompt 'query'" in gap for gap in gaps)
    assert "differs slightly" in (out / "README.md").read_text()


def test_exact_module(tmp_path):
    """--exact: decoder2vec's own ST module, which ST 6 loads only with trust_remote_code=True."""
    from sentence_transformers import SentenceTransformer

    encoder = tiny_encoder("gemma3_text")
    out = export_sentence_transformers(encoder, tmp_path / "st", instructions={"q": INSTRUCTION}, exact=True)
    assert json.loads((out / "modules.json").read_text())[0]["type"] == "decoder2vec.st_module.EncoderModule"
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(out), device="cpu")
    st = SentenceTransformer(str(out), device="cpu", trust_remote_code=True)
    assert st.get_embedding_dimension() == encoder.dimension and st.max_seq_length == encoder.max_length
    assert_same_vectors(encoder, st, TEXTS)
    assert_same_vectors(encoder, st, TEXTS[:1])
    assert_same_vectors(encoder, st, TEXTS, instruction=INSTRUCTION)
    # ST's own save writes a folder that loads again, through either door.
    st.save(str(tmp_path / "resaved"))
    assert_same_vectors(encoder, SentenceTransformer(str(tmp_path / "resaved"), device="cpu", trust_remote_code=True),
                        TEXTS)
    np.testing.assert_allclose(Encoder.from_pretrained(tmp_path / "resaved").encode(TEXTS), encoder.encode(TEXTS),
                               atol=1e-5)
    assert "trust_remote_code=True" in (out / "README.md").read_text()
