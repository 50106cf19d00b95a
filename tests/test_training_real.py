"""Each shipped SmolLM2 recipe trains the real model for one step and writes a loadable Encoder
whose vectors differ from the base model's (sizes cut down with overrides so it stays quick)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decoder2vec import Encoder
from decoder2vec.training import train

RECIPES = Path(__file__).resolve().parents[1] / "src" / "decoder2vec" / "recipes" / "smollm2-135m"
TEXTS = ["A man is playing a guitar.", "The capital of France is Paris."]


@pytest.mark.real
@pytest.mark.parametrize("stage", ["mntp", "simcse", "supervised"])
def test_shipped_recipe_trains_smollm2(tmp_path, smollm2, stage):
    extra = {"eval_examples": 4} if stage == "mntp" else {}
    folder = train(RECIPES / f"{stage}.yaml", model="smollm2-135m", output_dir=str(tmp_path / stage), max_steps=1,
                   per_device_train_batch_size=2, train_max_length=16, data_limit=8, report_to="none",
                   learning_rate=1e-3, warmup_steps=0, **extra)
    trained = Encoder.from_pretrained(folder)
    assert trained.config.stages[-1]["stage"] == stage and trained.config.stages[-1]["steps"] == 1
    assert trained.config.max_length == smollm2.config.max_length  # the training length is not inference's
    before, after = smollm2.encode(TEXTS), trained.encode(TEXTS)
    assert after.shape == before.shape
    assert not np.allclose(before, after, atol=1e-4)


@pytest.mark.real
@pytest.mark.parametrize("stage", ["supervised"])
def test_contrastive_held_out_loss_falls_on_smollm2(tmp_path, smollm2, stage):
    # A short run of the shipped recipe (smaller batches and texts); the held-out loss is measured
    # on the same examples before and after, so a fall is training, not noise. SimCSE is not here:
    # from the *untrained* model 8 steps raised its held-out loss (0.67 -> 1.13); from the MNTP
    # stage, as the recipe chains it, the demo measures 1.119 -> 0.964 (20 steps) and
    # 1.119 -> 0.487 (60 steps), docs/training.md.
    folder = train(RECIPES / f"{stage}.yaml", model="smollm2-135m", output_dir=str(tmp_path / stage), max_steps=8,
                   per_device_train_batch_size=8, train_max_length=24, eval_examples=16, data_limit=400,
                   report_to="none", warmup_steps=0, save_steps=100)
    record = Encoder.from_pretrained(folder).config.stages[-1]
    before, after = record["before"][f"{stage}_eval_loss"], record["after"][f"{stage}_eval_loss"]
    assert after < before, (before, after)
