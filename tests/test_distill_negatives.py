"""The distill stage's teacher-mined hard negatives (num_negatives, relative_margin) with a toy
teacher whose vectors are points on a circle (so every ranking is known by hand), and the teacher
precision (bf16 autocast where fast training is bf16) recorded in the teacher cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from decoder2vec import Decoder2VecError, cpu
from decoder2vec.data import registry
from decoder2vec.training import distill as distill_module
from decoder2vec.training import teacher as teacher_module
from decoder2vec.training.config import make_config
from decoder2vec.training.distill import DistillStage
from test_training_support import FAST, encoder_folder
from tiny import tiny_encoder

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett"]
QUERIES = [f"how do I use {w}" for w in WORDS]
DOCUMENTS = [f"The {w} page explains every setting of {w}." for w in WORDS]


def _point(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


# Document i sits at 20*i degrees, query i 3 degrees past its positive: cosine to its positive
# cos 3 = 0.9986, to document i+1 cos 17 = 0.956, to i-1 cos 23 = 0.921, to i+2 cos 37, to i-2 cos 43.
TABLE = {**{("document", d): _point(20 * i) for i, d in enumerate(DOCUMENTS)},
         **{("query", q): _point(20 * i + 3) for i, q in enumerate(QUERIES)}}


def _toy_teacher(calls: list | None = None, table: dict = TABLE):
    def encode(teacher, texts, *, batch_size=64, side="query"):
        if calls is not None:
            calls.append((len(texts), torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()))
        return np.array([table.get((side, t), _point(200)) for t in texts], dtype=np.float32)
    return encode


def _pairs(path, count, documents=DOCUMENTS):
    path.write_text("".join(json.dumps({"query": q, "positive": d}) + "\n"
                            for q, d in zip(QUERIES[:count], documents[:count])))
    return str(path)


def _stage(tmp_path, monkeypatch, data, sides, table=TABLE, **overrides):
    monkeypatch.setattr(registry, "PAIR_SIDES", sides)
    monkeypatch.setattr(teacher_module, "encode_with_teacher", _toy_teacher(table=table))
    values = {"stage": "distill", "model": str(encoder_folder(tmp_path)), "data": data,
              "output_dir": str(tmp_path / "out"), "teacher": "toy", "eval_examples": 0, **FAST,
              "train_max_length": 64, **overrides}
    stage = DistillStage(make_config(values))
    stage.load()
    return stage, stage.dataset()


def _negatives(items) -> dict[str, list[str]]:
    """query -> the documents added after its positive."""
    return {example.texts[0]: list(example.texts[2:]) for example in items}


@pytest.mark.parametrize("score_rows", [1024, 3])  # 3: the queries scored in blocks of 3, 3 and 2
def test_each_query_gets_the_documents_the_teacher_ranks_closest_in_order(tmp_path, monkeypatch, capsys,
                                                                          score_rows):
    monkeypatch.setattr(distill_module, "SCORE_ROWS", score_rows)
    source = _pairs(tmp_path / "pages.jsonl", 8)
    stage, items = _stage(tmp_path, monkeypatch, [source], {source: ("query", "document")},
                          num_negatives=2, relative_margin=0.01)  # 0.99 x 0.9986: nothing here reaches it
    d = DOCUMENTS
    expected = {QUERIES[0]: [d[1], d[2]], **{QUERIES[i]: [d[i + 1], d[i - 1]] for i in range(1, 7)},
                QUERIES[7]: [d[6], d[5]]}
    assert _negatives(items) == expected
    assert "16 hard negatives added" in capsys.readouterr().out
    # Each negative learns its own document-side teacher vector, in the query's batch.
    example = next(x for x in items if x.texts[0] == QUERIES[3])
    rows = stage.collate([example])["rows"].tolist()
    assert np.allclose(stage.teacher[rows].numpy(), [_point(63), _point(60), _point(80), _point(40)], atol=1e-6)
    assert example.queries == (True, False, False, False)
    inputs = stage.collate(items[:4])  # 4 pairs, 2 negatives each: 16 texts in the losses' batch
    loss, _ = stage.loss(stage.net, inputs)
    assert inputs["rows"].shape == (16,) and torch.isfinite(loss)


def test_the_margin_skips_a_candidate_nearly_as_close_as_the_positive(tmp_path, monkeypatch, capsys):
    source = _pairs(tmp_path / "pages.jsonl", 8)
    _, items = _stage(tmp_path, monkeypatch, [source], {source: ("query", "document")}, num_negatives=2)
    # Default relative_margin 0.05: document i+1 (cos 17 = 0.956 > 0.9986 - 0.05 x 0.9986) is skipped for queries 0-6.
    d = DOCUMENTS
    expected = {QUERIES[0]: [d[2], d[3]], **{QUERIES[i]: [d[i - 1], d[i + 2]] for i in range(1, 6)},
                QUERIES[6]: [d[5], d[4]], QUERIES[7]: [d[6], d[5]]}
    assert _negatives(items) == expected
    assert "16 hard negatives added to query -> document examples (up to 2 each); 7 candidates skipped" \
        in capsys.readouterr().out


def test_a_near_duplicate_of_the_positive_is_never_a_negative(tmp_path, monkeypatch):
    # Page 2's document reworded as page 5's: the teacher puts it at 42 degrees, 1 degree from query 2
    # (cos 0.99985 >= 0.99 x 0.9986), closer than query 2's own positive.
    documents = list(DOCUMENTS)
    documents[5] = "The charlie page explains all the settings of charlie."
    table = {**TABLE, ("document", documents[5]): _point(42)}
    source = _pairs(tmp_path / "pages.jsonl", 8, documents)
    _, items = _stage(tmp_path, monkeypatch, [source], {source: ("query", "document")}, table=table,
                      num_negatives=3, relative_margin=0.01)
    assert _negatives(items)[QUERIES[2]] == [DOCUMENTS[3], DOCUMENTS[1], DOCUMENTS[4]]  # 17, 23, 37 degrees off


def test_the_margin_is_relative_to_the_size_of_a_negative_positive_score(tmp_path, monkeypatch):
    # Query 0's positive is 120 degrees off (score -0.5): the limit is -0.5 - 0.5 x 0.05 = -0.525 (mining.py's
    # rule), so document 1 at 119 degrees (-0.485) is skipped and documents 2 at 130 (-0.643) and 3 at 180 (-1)
    # kept. A ratio rule (0.95 x -0.5 = -0.475) would keep document 1 and give [1, 2].
    table = {("query", QUERIES[0]): _point(0), ("document", DOCUMENTS[0]): _point(120),
             ("document", DOCUMENTS[1]): _point(-119), ("document", DOCUMENTS[2]): _point(130),
             ("document", DOCUMENTS[3]): _point(180),
             ("query", QUERIES[1]): _point(-116), ("query", QUERIES[2]): _point(133)}
    source = _pairs(tmp_path / "pages.jsonl", 4)  # 4: one batch
    _, items = _stage(tmp_path, monkeypatch, [source], {source: ("query", "document")}, table=table, num_negatives=2)
    assert _negatives(items)[QUERIES[0]] == [DOCUMENTS[2], DOCUMENTS[3]]


def test_translation_pairs_and_sentences_get_no_negatives_and_lend_none(tmp_path, monkeypatch):
    pages = _pairs(tmp_path / "pages.jsonl", 8)
    translations = tmp_path / "translations.jsonl"
    translations.write_text("".join(json.dumps({"query": d, "positive": d.upper()}) + "\n" for d in DOCUMENTS[8:]))
    _, items = _stage(tmp_path, monkeypatch, [pages, str(translations)], {pages: ("query", "document")},
                      num_negatives=3, relative_margin=0.0)
    by_query = {x.texts[0]: x.texts for x in items}
    assert by_query[DOCUMENTS[8]] == (DOCUMENTS[8], DOCUMENTS[8].upper())
    assert by_query[DOCUMENTS[9]] == (DOCUMENTS[9], DOCUMENTS[9].upper())
    lent = {text for q in QUERIES[:8] for text in by_query[q][2:]}
    assert lent and lent <= set(DOCUMENTS[:8])  # only the pages' own documents


def test_held_out_documents_are_never_negatives(tmp_path, monkeypatch):
    source = _pairs(tmp_path / "pages.jsonl", 10)
    stage, items = _stage(tmp_path, monkeypatch, [source], {source: ("query", "document")},
                          eval_examples=2, num_negatives=20, relative_margin=0.0)  # all below the positive: kept
    held = {x.texts[1] for x in stage.eval_items}
    assert len(held) == 2 and all(len(x.texts) == 2 for x in stage.eval_items)
    trained = {x.texts[1] for x in items}
    assert len(trained) == 8 and not held & trained
    for example in items:
        assert sorted(example.texts[2:]) == sorted(trained - {example.texts[1]})


def test_no_hard_negatives_keeps_each_example_its_query_and_positive(tmp_path, monkeypatch):
    source = _pairs(tmp_path / "pages.jsonl", 8)
    stage, items = _stage(tmp_path, monkeypatch, [source], {source: ("query", "document")})
    assert sorted(x.texts for x in items) == sorted(zip(QUERIES[:8], DOCUMENTS[:8]))
    rows = stage.collate(items[:4])["rows"].tolist()
    expected = [stage.target_row[(x.texts[0], "query")] if k == 0 else stage.target_row[(x.texts[1], "document")]
                for x in items[:4] for k in (0, 1)]
    assert rows == expected and len(rows) == 8


@pytest.mark.parametrize("values, match", [
    ({"num_negatives": -1}, "num_negatives must be an integer >= 0"),
    ({"relative_margin": -0.1}, "relative_margin must be >= 0"),
])
def test_bad_negative_keys_are_named(values, match):
    with pytest.raises(Decoder2VecError, match=match):
        make_config({"stage": "distill", "data": ["x"], "output_dir": "o", **values})


# ------------------------------------------------------------------ teacher precision
@pytest.mark.parametrize("fast, training, precision", [(True, "bf16", "bf16"), (True, "fp32", "fp32"),
                                                       (False, "bf16", "fp32")])
def test_the_teacher_runs_under_bf16_autocast_only_where_fast_training_is_bf16(tmp_path, monkeypatch, fast,
                                                                                training, precision):
    calls = []
    source = _pairs(tmp_path / "pages.jsonl", 8)
    monkeypatch.setattr(cpu, "fast_training", lambda stage: training)
    monkeypatch.setattr(cpu.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(registry, "PAIR_SIDES", {source: ("query", "document")})
    values = {"stage": "distill", "model": str(encoder_folder(tmp_path)), "data": [source], "fast": fast,
              "output_dir": str(tmp_path / "out"), "teacher": "toy", "eval_examples": 0, **FAST}
    monkeypatch.setattr(teacher_module, "encode_with_teacher", _toy_teacher(calls))
    stage = DistillStage(make_config(values))
    stage.load()
    stage.dataset()
    info = json.loads((tmp_path / "out.checkpoints" / "teacher_vectors.json").read_text())
    assert info["precision"] == precision
    assert calls and all(on == (precision == "bf16") for _, on, _ in calls)
    assert all(dtype == torch.bfloat16 for _, on, dtype in calls if on)


def test_a_cache_of_another_precision_is_computed_again(tmp_path, monkeypatch):
    torch.manual_seed(7)
    folder = tmp_path / "teacher"
    tiny_encoder("qwen2").save_pretrained(folder)
    texts = ["A small model trains quickly.", "Rain fell all night.", "The committee approved the budget."]
    calls = []
    real = teacher_module.encode_with_teacher
    monkeypatch.setattr(teacher_module, "encode_with_teacher",
                        lambda *a, **k: calls.append(torch.is_autocast_cpu_enabled()) or real(*a, **k))
    cache = tmp_path / "cache"
    fp32 = teacher_module.teacher_vectors(str(folder), texts, cache, log=lambda _: None)
    assert json.loads((cache / "teacher_vectors.json").read_text())["precision"] == "fp32"
    teacher_module.teacher_vectors(str(folder), texts, cache, log=lambda _: None)
    assert calls == [False]  # the same precision: read back
    bf16 = teacher_module.teacher_vectors(str(folder), texts, cache, log=lambda _: None, precision="bf16")
    assert calls == [False, True]
    assert json.loads((cache / "teacher_vectors.json").read_text())["precision"] == "bf16"
    assert bf16.dtype == np.float32 and np.allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    assert (bf16 * fp32).sum(axis=1).min() > 0.95 and not np.array_equal(bf16, fp32)
    # A cache written before the precision was recorded was fp32: read back for fp32.
    teacher_module.teacher_vectors(str(folder), texts, cache, log=lambda _: None)  # fp32 again: computed
    assert calls == [False, True, False]
    info = json.loads((cache / "teacher_vectors.json").read_text())
    del info["precision"]
    (cache / "teacher_vectors.json").write_text(json.dumps(info))
    teacher_module.teacher_vectors(str(folder), texts, cache, log=lambda _: None)
    assert calls == [False, True, False]
    with pytest.raises(Decoder2VecError, match="precision 'fp16'"):
        teacher_module.teacher_vectors(str(folder), texts, cache, precision="fp16")
