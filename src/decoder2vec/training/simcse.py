"""Unsupervised SimCSE: encode each sentence twice; dropout makes the two vectors differ, and each
must find its twin among the batch's other sentences (InfoNCE)."""

from __future__ import annotations

import random

from .config import SimCSEConfig
from .contrastive import EncoderStage
from .losses import info_nce, world
from .stage import check_enough


class SimCSEStage(EncoderStage):
    name = "simcse"
    config: SimCSEConfig
    eval_with_dropout = True

    def dataset(self) -> list:
        from ..data.corpora import load_sentences

        cfg = self.config
        sentences = [s for source in cfg.data for s in load_sentences(
            source, text_column=cfg.text_column, min_words=cfg.min_words, max_words=cfg.max_words)]
        sentences = list(dict.fromkeys(sentences))  # a duplicate in a batch would be a false negative
        random.Random(cfg.seed).shuffle(sentences)
        if cfg.data_limit:
            sentences = sentences[:cfg.data_limit]
        return check_enough(self.hold_out(sentences, "sentences"), cfg, "sentences")

    def collate(self, items: list) -> dict:
        ids, masks, _ = self.encoder.tokenize(items)
        # Both copies in one forward: each row draws its own dropout mask.
        return {"batch": self.encoder.collate(ids + ids, masks + masks), "n": len(items)}

    def loss(self, model, inputs):
        vectors = self.embed(model, inputs["batch"])
        n = inputs["n"]
        loss, candidates = info_nce(vectors[:n], vectors[n:], scale=self.config.scale, gather=self.gather and world()[1] > 1)
        return loss, {"negatives": candidates - 1}
