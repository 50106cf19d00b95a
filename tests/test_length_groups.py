"""Training batches split by length (training/contrastive.py): the groups, and vectors equal to
each text encoded alone, for every family and both padding sides."""

from __future__ import annotations

import pytest
import torch

from decoder2vec.training.config import make_config
from decoder2vec.training.contrastive import length_groups
from decoder2vec.training.supervised import SupervisedStage
from test_training_support import FAST, encoder_folder, pairs_file
from tiny import FAMILIES


@pytest.mark.parametrize("lengths, groups", [
    ([20] * 4 + [64] * 4, [[0, 1, 2, 3], [4, 5, 6, 7]]),  # short queries and long documents
    ([64, 20, 64, 20], [[1, 3], [0, 2]]),  # each group in length order, whatever the batch order
    ([30, 31, 32, 33], [[0, 1, 2, 3]]),  # splitting saves < 5 %: one batch
    ([7], [[0]]),
    ([5, 64, 10, 60, 12, 64, 33], [[0, 2, 4], [6], [3, 1, 5]]),  # 261 padded tokens instead of 448
])
def test_length_groups(lengths, groups):
    assert length_groups(lengths) == groups


def test_length_groups_never_exceed_four_and_keep_every_row_once():
    lengths = [1 + (i * 37) % 97 for i in range(64)]  # 1..97 spread evenly: the 4th group saves < 5 %
    groups = length_groups(lengths)
    assert len(groups) == 3
    assert max(lengths[row] for row in groups[0]) < min(lengths[row] for row in groups[1])
    assert sorted(row for group in groups for row in group) == list(range(64))


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_batch_split_by_length_gives_each_text_its_vector_alone(tmp_path, family, padding_side):
    config = make_config({"stage": "supervised", "model": str(encoder_folder(tmp_path, family)),
                          "data": [str(pairs_file(tmp_path))], "output_dir": str(tmp_path / "out"),
                          **FAST, "train_max_length": 64})
    stage = SupervisedStage(config)
    stage.load()
    stage.view.padding_side = padding_side
    stage.net.eval()
    texts = ["short", "a much longer text that pads every other row of this batch " * 2, "tiny one",
             "another long text, long enough to be cut into its own group " * 2]
    ids, masks = stage.tokenize(texts)
    batch = stage.view.collate(ids, masks)
    assert len(length_groups(batch.attention_mask.sum(dim=1).tolist())) == 2
    with torch.no_grad():
        together = stage.embed(stage.net, batch)
        alone = torch.cat([stage.embed(stage.net, stage.view.collate([ids[i]], [masks[i]])) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-5)
