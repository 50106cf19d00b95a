"""Unsupervised SimCSE: encode each sentence twice; dropout makes the two vectors differ, and each
must find its twin among the batch's other sentences (InfoNCE)."""

from __future__ import annotations

import random

from ..data.corpora import load_sentences
from ..data.paper import is_paper_source, paper_texts
from .config import SimCSEConfig
from .contrastive import EncoderStage, poolable
from .losses import info_nce, world
from .stage import check_enough


def _paper_sentences(source: str, min_words: int, max_words: int) -> list[str]:
    # Wiki1M is one sentence a line already: keep lines whole, within the word range.
    return [s for s in paper_texts(source) if min_words <= len(s.split()) <= max_words]


class SimCSEStage(EncoderStage):
    config_class = SimCSEConfig
    config: SimCSEConfig
    eval_with_dropout = True
    wraps_chat = False  # LLM2Vec's run_simcse.py tokenizes the bare sentences (its TODO: wrap them)

    def dataset(self) -> list:
        cfg = self.config
        sentences = [s for source in cfg.data for s in (
            _paper_sentences(source, cfg.min_words, cfg.max_words) if is_paper_source(source) else load_sentences(
                source, text_column=cfg.text_column, min_words=cfg.min_words, max_words=cfg.max_words))]
        sentences = list(dict.fromkeys(sentences))  # a duplicate in a batch would be a false negative
        random.Random(cfg.seed).shuffle(sentences)
        if cfg.data_limit:
            sentences = sentences[:cfg.data_limit]
        return check_enough(self.hold_out(sentences, "sentences"), cfg, "sentences")

    def collate(self, items: list) -> dict:
        ids, masks = self.tokenize(items)
        keep = poolable(masks)
        self.note_dropped(keep.count(False), "sentences")
        ids = [x for x, k in zip(ids, keep) if k]
        masks = [m for m, k in zip(masks, keep) if k]
        # Both copies in one forward: each row draws its own dropout mask.
        return {"batch": self.view.collate(ids + ids, masks + masks), "n": len(ids)}

    def loss(self, model, inputs):
        vectors = self.embed(model, inputs["batch"])
        n = inputs["n"]
        loss, candidates = info_nce(vectors[:n], vectors[n:], scale=self.config.scale, gather=self.gather and world()[1] > 1)
        return loss, {"negatives": candidates - 1, **self.counts()}
