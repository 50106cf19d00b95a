"""Training data: corpora (local files, sentence splitting) and pair sets (columns, STS-B
positives and hard negatives, LibreOffice alignment); never a test split."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from decoder2vec import Decoder2VecError
from decoder2vec.data import corpora, pairs


@pytest.fixture
def texts():
    return ["First document. It has two sentences here!", "Second document with one sentence only here."]


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".parquet"])
def test_local_corpus_files(tmp_path, texts, suffix):
    path = tmp_path / f"corpus{suffix}"
    if suffix == ".txt":
        path.write_text("\n".join(texts[:1] + ["", "   "] + texts[1:]) + "\n")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    elif suffix == ".csv":
        pd.DataFrame({"text": texts}).to_csv(path, index=False)
    else:
        pd.DataFrame({"text": texts}).to_parquet(path)
    assert corpora.load_texts(str(path)) == texts
    assert corpora.load_texts(str(path), limit=1) == texts[:1]


def test_text_column_is_checked(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(Decoder2VecError, match="no column 'text'.*body"):
        corpora.load_texts(str(path))
    assert corpora.load_texts(str(path), text_column="body") == ["x"]


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(Decoder2VecError, match="data file not found"):
        corpora.load_texts(str(tmp_path / "missing.txt"))
    (tmp_path / "c.docx").write_text("x")
    with pytest.raises(Decoder2VecError, match="unsupported data file type"):
        corpora.load_texts(str(tmp_path / "c.docx"))


def test_test_splits_are_refused():
    with pytest.raises(Decoder2VecError, match="test split"):
        corpora.load_table("some/dataset:default:test")


def test_split_sentences_keeps_a_length_range():
    text = "Short one. This sentence has exactly seven words in it. Dr. Smith said no.\nA new line starts a sentence here."
    assert corpora.split_sentences(text, min_words=5, max_words=8) == [
        "This sentence has exactly seven words in it.", "A new line starts a sentence here."]


def test_load_sentences_deduplicates_and_limits(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("One two three four five. One two three four five. Six seven eight nine ten.\n" * 2)
    assert corpora.load_sentences(str(path)) == ["One two three four five.", "Six seven eight nine ten."]
    assert corpora.load_sentences(str(path), limit=1) == ["One two three four five."]


def test_pairs_from_files_with_usual_column_names(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"sentence1": ["a q", "b q"], "sentence2": ["a p", "b p"]}).to_csv(path, index=False)
    got = pairs.load_pairs(str(path))
    assert [(p.query, p.positive, p.negatives, p.task) for p in got] == [
        ("a q", "a p", [], str(path)), ("b q", "b p", [], str(path))]
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"anchor": "q", "positive": "p", "negative": ["n1", "n2"]}) + "\n")
    assert pairs.load_pairs(str(path))[0].negatives == ["n1", "n2"]


def test_pairs_without_a_positive_column(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"query": ["q"], "other": ["x"]}).to_csv(path, index=False)
    with pytest.raises(Decoder2VecError, match="no positive column"):
        pairs.load_pairs(str(path))


def test_stsb_pairs_positives_and_hard_negatives(monkeypatch):
    from decoder2vec.data import sources

    rows = [("a", "b", 4.5), ("a", "c", 0.5), ("d", "e", 2.0), ("f", "g", 4.0), ("h", "h", 5.0)]
    asked = []
    monkeypatch.setattr(sources, "stsb", lambda lang, split: asked.append((lang, split)) or rows)
    got = pairs.stsb_pairs("en", min_score=4.0, negative_max_score=1.0)
    assert asked == [("en", "train")]
    assert [(p.query, p.positive, p.negatives) for p in got] == [
        ("a", "b", ["c"]), ("b", "a", []), ("f", "g", []), ("g", "f", [])]
    assert {p.task for p in got} == {"stsb-en-train"}
    assert all(not p.negatives for p in pairs.stsb_pairs("en"))


def test_libreoffice_pairs_align_by_page_and_paragraph_id(monkeypatch):
    from decoder2vec.data import sources

    pages = {
        "en": {"p1": {"paragraphs": ["Open the file menu now.", "Short", "Save your work often please."],
                      "paragraph_ids": ["x1", "x2", "x3"]},
               "p2": {"paragraphs": ["Only in English here."], "paragraph_ids": ["y1"]}},
        "da": {"p1": {"paragraphs": ["Gem dit arbejde ofte.", "Åbn filmenuen nu.", "Kort"],
                      "paragraph_ids": ["x3", "x1", "x2"]}},
    }
    monkeypatch.setattr(sources, "libreoffice_help", lambda lang: pages[lang])
    got = pairs.libreoffice_pairs("da")
    assert [(p.query, p.positive) for p in got] == [
        ("Open the file menu now.", "Åbn filmenuen nu."), ("Save your work often please.", "Gem dit arbejde ofte.")]


def test_packaged_names_are_listed():
    # The language module adds its own names (man pages, training splits) to these.
    assert set(corpora.packaged_corpora()) >= {"wikipedia-en", "libreoffice-help-en", "libreoffice-help-da",
                                               "libreoffice-help-de", "manpages-da"}
    assert set(pairs.packaged_pairs()) >= {"stsb-en-train", "stsb-de-train", "libreoffice-en-da", "libreoffice-en-de"}
