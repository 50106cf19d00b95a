"""Matryoshka training on tiny models: the loss is the weighted sum of the stage's own loss over
renormalised prefixes (vectors embedded once), the cached loss agrees with the plain one, and the
finished folder says which lengths were trained (trained_dims, untrained_dim_warning)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from decoder2vec import Encoder, EncoderConfig
from decoder2vec.folder.trained_dims import trained_dims, untrained_dim_warning
from decoder2vec.training import train
from decoder2vec.training.losses import info_nce
from decoder2vec.training.matryoshka import apply_matryoshka
from decoder2vec.training.simcse import SimCSEStage
from decoder2vec.training.supervised import SupervisedStage
from test_training_support import FAST, attached_stage, corpus_file, encoder_folder, pairs_file


def _counted(stage):
    calls = []
    inner = stage.embed
    stage.embed = lambda model, batch: calls.append(1) or inner(model, batch)
    return calls


def test_supervised_loss_is_the_weighted_sum_over_prefixes(tmp_path):
    stage, model, items = attached_stage(SupervisedStage, tmp_path, pairs_file(tmp_path), matryoshka_dims=[8, 32],
                                 matryoshka_weights=[2.0, 1.0], scale=20.0)
    inputs = stage.collate(items[:1])
    vectors = stage.embed(model, stage.view.collate(inputs["ids"], inputs["masks"]))
    n = inputs["n"]
    keys = inputs["keys"]

    def plain(d):
        return info_nce(vectors[:n, :d], vectors[n:2 * n, :d], vectors[2 * n:, :d], scale=20.0, keys=keys)[0]

    expected = 2.0 * plain(8) + plain(32)
    assert abs(plain(8).item() - plain(32).item()) > 1e-3  # the prefix loss is a different number
    calls = _counted(stage)
    apply_matryoshka(stage)
    loss, _ = stage.loss(model, inputs)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert len(calls) == 1  # embedded once


def test_cached_matryoshka_loss_gives_the_plain_gradients(tmp_path):
    stage, model, items = attached_stage(SupervisedStage, tmp_path, pairs_file(tmp_path), matryoshka_dims=[8, 32],
                                 mini_batch_size=3)
    apply_matryoshka(stage)
    inputs = stage.collate(items[:1])
    model.train()
    loss, _ = stage.loss(model, inputs)
    loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    cached, _ = stage.cached_backward(model, inputs)
    assert cached.item() == pytest.approx(loss.item(), rel=1e-5)
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert torch.allclose(param.grad, plain[name], atol=1e-6, rtol=1e-4), name


def test_simcse_loss_sums_over_prefixes_and_embeds_once(tmp_path):
    stage, model, items = attached_stage(SimCSEStage, tmp_path, corpus_file(tmp_path), matryoshka_dims=[16, 4],
                                 min_words=3, attention_dropout=0.0, hidden_dropout=0.0)
    model.eval()  # no dropout: the expected value can be recomputed
    inputs = stage.collate(items[:4])
    vectors = stage.embed(model, inputs["batch"])
    n = inputs["n"]
    expected = sum(info_nce(vectors[:n, :d], vectors[n:, :d], scale=20.0)[0] for d in (16, 4))
    calls = _counted(stage)
    apply_matryoshka(stage)
    loss, logs = stage.loss(model, inputs)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert len(calls) == 1 and set(logs) >= {"loss_dim_16", "loss_dim_4", "negatives"}
    assert stage.embed.__name__ == "<lambda>"  # the counting wrapper is back: nothing left patched


def test_trained_folder_records_its_dims_and_warns_for_others(tmp_path):
    folder = train({"stage": "simcse", "model": str(encoder_folder(tmp_path)), "data": [str(corpus_file(tmp_path))],
                    "output_dir": str(tmp_path / "simcse"), "min_words": 3, "matryoshka_dims": [32, 16, 8],
                    **FAST, "max_steps": 2})
    config = Encoder.from_pretrained(folder).config
    record = json.loads((folder / "decoder2vec_config.json").read_text())["stages"][-1]
    assert record["hyperparameters"]["matryoshka_dims"] == [32, 16, 8]
    assert trained_dims(config) == [8, 16, 32]
    assert untrained_dim_warning(config, 16) is None and untrained_dim_warning(config, None) is None
    assert "not one of the Matryoshka dimensions this model was trained for (8, 16, 32)" in \
        untrained_dim_warning(config, 12)
    encoder = Encoder.from_pretrained(folder)
    with pytest.warns(UserWarning, match=r"truncate_dim=12 is not one of the Matryoshka dimensions"):
        encoder.encode(["a text"], truncate_dim=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert encoder.encode(["a text"], truncate_dim=16).shape == (1, 16)


def test_trained_dims_come_from_the_last_embedding_stage():
    def record(stage, dims=None):
        return {"stage": stage, "hyperparameters": {"matryoshka_dims": dims or []}}

    base = EncoderConfig(dimension=64)
    assert trained_dims(base) == [64]
    assert "not trained with Matryoshka" in untrained_dim_warning(base, 32)
    assert untrained_dim_warning(base, 64) is None
    both = EncoderConfig(dimension=64, stages=[record("simcse", [64, 32]), {"stage": "merge"}, record("mntp")])
    assert trained_dims(both) == [32, 64]  # merges and MNTP keep the last embedding stage's dims
    later = EncoderConfig(dimension=64, stages=[record("simcse", [64, 32]), record("supervised")])
    assert trained_dims(later) == [64]  # a later stage without Matryoshka trained the full vector only
