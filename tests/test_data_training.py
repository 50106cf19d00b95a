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


@pytest.mark.parametrize("num_negatives, expected", [
    (0, {"a": [], "b": [], "f": [], "g": []}),
    (1, {"a": ["c"], "b": [], "f": [], "g": []}),  # the default: a's one low-scoring partner
])
def test_supervised_num_negatives_caps_the_stsb_partners(monkeypatch, capsys, num_negatives, expected):
    from decoder2vec.data import sources
    from decoder2vec.training.config import make_config
    from decoder2vec.training.supervised import SupervisedStage

    rows = [("a", "b", 4.5), ("a", "c", 0.5), ("f", "g", 4.0)]
    monkeypatch.setattr(sources, "stsb", lambda lang, split: rows)
    config = make_config({"stage": "supervised", "model": "unused", "data": ["stsb-en-train"], "output_dir": "o",
                          "per_device_train_batch_size": 2, "eval_examples": 0, "batch_per_task": False,
                          **({} if num_negatives == 1 else {"num_negatives": num_negatives})})
    got = SupervisedStage(config).dataset()
    assert {p.query: p.negatives for p in got} == expected
    assert capsys.readouterr().out == ""  # STS-B gives one partner at most: nothing was cut


def test_supervised_num_negatives_keeps_a_pair_files_first_negatives(tmp_path, capsys):
    from decoder2vec.training.config import make_config
    from decoder2vec.training.supervised import SupervisedStage

    path = tmp_path / "mined.jsonl"
    rows = [{"query": f"q{i}", "positive": f"p{i}", "negative": [f"n{i}a", f"n{i}b", f"n{i}c"]} for i in range(3)]
    path.write_text("".join(json.dumps(row) + "\n" for row in [*rows, {"query": "q3", "positive": "p3"}]))
    config = make_config({"stage": "supervised", "model": "unused", "data": [str(path)], "output_dir": "o",
                          "per_device_train_batch_size": 2, "eval_examples": 0, "batch_per_task": False,
                          "num_negatives": 2})
    got = SupervisedStage(config).dataset()
    assert {p.query: p.negatives for p in got} == {"q0": ["n0a", "n0b"], "q1": ["n1a", "n1b"], "q2": ["n2a", "n2b"],
                                                   "q3": []}
    assert capsys.readouterr().out == ("supervised: 3 of 4 pairs carry more than num_negatives=2 hard negatives; "
                                       "each keeps its first 2\n")


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


# ------------------------------------------------------------------ the paper's data (data/paper.py)
from decoder2vec.data import paper  # noqa: E402


def _e5_folder(root):
    folder = root / "echo-data"
    folder.mkdir()
    rows = {
        "allnli_split1": [("A man plays a guitar.", "A person makes music.", "Nobody plays.")],
        "allnli_split2": [("A dog runs.", "An animal moves.", "A cat sleeps.")],
        "msmarco_passage": [("what is rope", "RoPE rotates query and key vectors.", "Ropes are made of fibre.")],
    }
    for name, items in rows.items():
        with open(folder / f"{name}.jsonl", "w") as f:
            for q, p, n in items:
                f.write(json.dumps({"query": q, "positive": p, "negative": n}) + "\n")
    return folder


def test_e5_reader_gives_each_dataset_its_instruction_and_merges_split_halves(tmp_path):
    got = {p.query: p for p in paper.read_e5(_e5_folder(tmp_path))}
    nli1, nli2, marco = got["A man plays a guitar."], got["A dog runs."], got["what is rope"]
    assert nli1.instruction == "Given a premise, retrieve a hypothesis that is entailed by the premise"
    assert nli2.instruction == "Retrieve semantically similar text"
    assert (nli1.task, nli2.task, marco.task) == ("allnli", "allnli", "msmarco_passage")  # one task, two instructions
    assert nli1.document_instruction is None and nli2.document_instruction == nli2.instruction  # symmetric half
    assert marco.instruction.startswith("Given a web search query") and marco.document_instruction is None
    assert marco.positive == "RoPE rotates query and key vectors." and marco.negatives == ["Ropes are made of fibre."]


def test_e5_reader_names_the_bad_file_and_line(tmp_path):
    folder = _e5_folder(tmp_path)
    (folder / "nq.jsonl").write_text('{"query": "q", "positive": "p"}\n{"query": "only"}\n')
    with pytest.raises(Decoder2VecError, match=r"nq.jsonl:2: not an E5 row"):
        paper.read_e5(folder)
    (folder / "nq.jsonl").unlink()
    (folder / "mydata.jsonl").write_text("{}\n")
    with pytest.raises(Decoder2VecError, match=r"mydata.jsonl is not an E5 dataset \(known: allnli_split1"):
        paper.read_e5(folder)
    with pytest.raises(Decoder2VecError, match="not a folder"):
        paper.paper_pairs(f"e5:{tmp_path / 'missing'}")


def test_wikitext_and_wiki1m_loaders_read_the_hub_formats(tmp_path, monkeypatch):
    table = pd.DataFrame({"text": ["", " = Valkyria Chronicles III = \n", "", " Senjō no Valkyria 3 is a game . \n"]})
    parts = [tmp_path / "train-00000-of-00002.parquet", tmp_path / "train-00001-of-00002.parquet"]
    table.iloc[:2].to_parquet(parts[0])
    table.iloc[2:].to_parquet(parts[1])
    lines = tmp_path / "wiki1m_for_simcse.txt"
    lines.write_text("YMCA in South Australia\n\n  The engine was rebuilt in 1950. \n", encoding="utf-8")
    monkeypatch.setattr(paper, "_wikitext_files", lambda: [str(p) for p in parts])
    monkeypatch.setattr(paper, "_wiki1m_file", lambda: str(lines))
    # Wikitext lines stay as they are, empty ones included: the reference packs their BOS too.
    assert paper.paper_texts("wikitext-103") == table["text"].tolist()
    assert paper.paper_texts("wiki1m") == ["YMCA in South Australia", "The engine was rebuilt in 1950."]
    assert paper.is_paper_source("e5:cache/echo-data") and not paper.is_paper_source("stsb-en-train")


def test_supervised_stage_trains_on_the_e5_layout(tmp_path):
    from test_training_support import FAST, encoder_folder

    from decoder2vec.training import train
    from decoder2vec.training.config import make_config
    from decoder2vec.training.supervised import SupervisedStage

    folder = _e5_folder(tmp_path)
    with open(folder / "msmarco_passage.jsonl", "a") as f:
        for i in range(7):
            f.write(json.dumps({"query": f"question {i}", "positive": f"answer number {i}", "negative": f"other {i}"}) + "\n")
    values = {"stage": "supervised", "model": str(encoder_folder(tmp_path)), "data": [f"e5:{folder}"],
              "output_dir": str(tmp_path / "out"), "eval_examples": 0, **FAST, "per_device_train_batch_size": 2}
    stage = SupervisedStage(make_config(values))
    stage.load()
    items = stage.dataset()
    assert all(len({p.task for p in item}) == 1 and len(item) == 2 for item in items)
    assert {p.task for item in items for p in item} == {"allnli", "msmarco_passage"}
    assert train(values, max_steps=2).is_dir()
