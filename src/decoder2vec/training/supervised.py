"""Supervised contrastive training on (query, positive, hard negatives).

Each query must pick its positive among every positive and hard negative of the batch, gathered
from all processes with gradient. With mini_batch_size > 0 the loss is cached (GradCache, Gao et
al. 2021): embed everything without a graph, take the loss's gradient w.r.t. the embeddings,
then re-embed chunk by chunk with a graph and back-propagate those gradients, so the effective
batch is limited by the loss, not by activation memory.
"""

from __future__ import annotations

import contextlib
import random

import torch

from .config import SupervisedConfig
from .contrastive import EncoderStage
from .losses import info_nce, world
from .stage import check_enough


class SupervisedStage(EncoderStage):
    name = "supervised"
    config: SupervisedConfig

    def dataset(self) -> list:
        from ..data.pairs import load_pairs

        cfg = self.config
        pairs = []
        for source in cfg.data:
            got = load_pairs(source, min_score=cfg.min_score,
                             negative_max_score=cfg.negative_max_score if cfg.hard_negatives else None)
            pairs.extend(got)
        if not cfg.hard_negatives:
            for pair in pairs:
                pair.negatives = []
        rng = random.Random(cfg.seed)
        rng.shuffle(pairs)
        if cfg.data_limit:
            pairs = pairs[:cfg.data_limit]
        pairs = check_enough(self.hold_out(pairs, "pairs"), cfg, "pairs")
        if not cfg.batch_per_task:
            return pairs
        # Items are whole batches, each from one source; the Trainer then shuffles batches
        # (its own batch size is 1, see engine.trainer_batch_size).
        size, batches = cfg.per_device_train_batch_size, []
        for task in dict.fromkeys(p.task for p in pairs):
            same = [p for p in pairs if p.task == task]
            batches += [same[i:i + size] for i in range(0, len(same) - size + 1, size)]
        rng.shuffle(batches)
        return batches

    def collate(self, items: list) -> dict:
        pairs = items[0] if self.config.batch_per_task else items
        queries = [p.query for p in pairs]
        documents = [p.positive for p in pairs] + [n for p in pairs for n in p.negatives]
        cfg = self.config
        instructions = [cfg.query_instruction] * len(queries) + [cfg.document_instruction] * len(documents)
        ids, masks, _ = self.encoder.tokenize(queries + documents, instructions)
        return {"ids": ids, "masks": masks, "n": len(pairs)}

    def example_key(self, pair):
        return frozenset((pair.query, pair.positive))

    def eval_batch(self, part: list) -> list:
        return [part] if self.config.batch_per_task else part

    def _split(self, vectors, n):
        return vectors[:n], vectors[n:2 * n], vectors[2 * n:]

    def _loss_from_vectors(self, vectors, n):
        queries, positives, negatives = self._split(vectors, n)
        gather = self.gather and self.config.gather_across_processes and world()[1] > 1
        return info_nce(queries, positives, negatives, scale=self.config.scale, gather=gather)

    def loss(self, model, inputs):
        vectors = self.embed(model, self.encoder.collate(inputs["ids"], inputs["masks"]))
        loss, candidates = self._loss_from_vectors(vectors, inputs["n"])
        return loss, {"negatives": candidates - 1}

    # ------------------------------------------------------------------ cached (GradCache) loss
    def cached_backward(self, model, inputs, *, scale: float = 1.0, backward=None, no_sync=None):
        """Loss with GradCache; runs the backward passes itself and returns (loss, logs).
        `scale` multiplies the loss before the backward (gradient accumulation); `backward` and
        `no_sync` come from accelerate when training, plain autograd otherwise."""
        backward = backward or (lambda t: t.backward())
        no_sync = no_sync or (lambda m: contextlib.nullcontext())
        size = self.config.mini_batch_size
        ids, masks = inputs["ids"], inputs["masks"]
        chunks = [slice(i, i + size) for i in range(0, len(ids), size)]
        states, parts = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(_rng_state())  # replay the same dropout when re-embedding
                parts.append(self.embed(model, self.encoder.collate(ids[chunk], masks[chunk])))
        vectors = torch.cat(parts).detach().requires_grad_()
        loss, candidates = self._loss_from_vectors(vectors, inputs["n"])
        (loss * scale).backward()
        grads = vectors.grad
        self.tokens_seen -= sum(len(x) for x in ids)  # counted twice: forward-only then with graph
        for k, (chunk, state) in enumerate(zip(chunks, states)):
            last = k == len(chunks) - 1
            with contextlib.nullcontext() if last else no_sync(model):
                _set_rng_state(state)
                part = self.embed(model, self.encoder.collate(ids[chunk], masks[chunk]))
                backward((part * grads[chunk]).sum())
        return loss.detach(), {"negatives": candidates - 1}


def _rng_state():
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


def _set_rng_state(state):
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
