"""Supervised contrastive training on (query, positive, hard negatives).

Each query must pick its positive among every positive and hard negative of the batch, gathered
from all processes with gradient. With batch_per_task, every step's batch is one block of
per_device_train_batch_size x world size pairs from a single task, dealt out to the processes
(LLM2Vec's E5 batching), so the negatives gathered across processes come from the same task. With mini_batch_size > 0 the loss is cached (GradCache, Gao et
al. 2021): embed everything without a graph, take the loss's gradient w.r.t. the embeddings,
then re-embed chunk by chunk with a graph and back-propagate those gradients, so the effective
batch is limited by the loss, not by activation memory.
"""

from __future__ import annotations

import contextlib
import random

import torch

from ..data.pairs import load_pairs
from ..data.paper import e5_blocks, is_e5_source, is_paper_source, paper_pairs
from ..errors import Decoder2VecError
from .config import SupervisedConfig
from .contrastive import EncoderStage, poolable
from .losses import info_nce, text_keys, world
from .stage import check_enough


class SupervisedStage(EncoderStage):
    config_class = SupervisedConfig
    config: SupervisedConfig

    def dataset(self) -> list:
        cfg = self.config
        if cfg.batch_per_task and len(cfg.data) == 1 and is_e5_source(cfg.data[0]):
            return self._e5_items()
        pairs = []
        low = cfg.negative_max_score if cfg.num_negatives else None  # STS-B: no partners looked up for none
        for source in cfg.data:
            got = paper_pairs(source) if is_paper_source(source) else load_pairs(
                source, min_score=cfg.min_score, negative_max_score=low)
            if source in cfg.source_instructions:
                for pair in got:
                    pair.instruction = pair.instruction or cfg.source_instructions[source]
            pairs.extend(got)
        self._keep_negatives(pairs)
        rng = random.Random(cfg.seed)
        rng.shuffle(pairs)
        if cfg.data_limit:
            pairs = pairs[:cfg.data_limit]
        pairs = check_enough(self.hold_out(pairs, "pairs"), cfg, "pairs")
        if not cfg.batch_per_task:
            return pairs
        # Items are whole per-process batches in training order (the Trainer's own batch size is
        # 1 and its sampler sequential, see engine).
        return self.source_batches(pairs, rng, "pairs")

    def _e5_items(self) -> list:
        """The E5 mix in llm2vec 0.2.3's order (data/paper.e5_blocks): the same single-task blocks,
        in the same order, for this seed and world size. The rows it never trains on (each task's
        tail short of a block) give the held-out examples, so holding out changes nothing."""
        cfg = self.config
        per, size = cfg.per_device_train_batch_size, world()[1]
        pairs = paper_pairs(cfg.data[0])
        self._keep_negatives(pairs)
        blocks, left_out = e5_blocks(pairs, per * size, cfg.seed)
        if cfg.data_limit:
            blocks = blocks[:max(1, cfg.data_limit // (per * size))]
        held = min(cfg.eval_examples, len(left_out))
        self.eval_items = random.Random(cfg.seed).sample(left_out, held) if held >= 2 else []
        if not blocks:
            raise Decoder2VecError(
                f"supervised: no dataset in {cfg.data[0]} has a full block of per_device_train_batch_size x processes "
                f"= {per * size} rows")
        return [b[r * per:(r + 1) * per] for b in blocks for r in range(size)]

    def _keep_negatives(self, pairs: list) -> None:
        """Each pair keeps its first num_negatives negatives; pairs that carried more are counted
        aloud (a pair file mined with more negatives than the recipe uses), never cut silently."""
        n = self.config.num_negatives
        cut = sum(1 for pair in pairs if len(pair.negatives) > n)
        for pair in pairs:
            pair.negatives = pair.negatives[:n]
        if cut and world()[0] == 0:
            print(f"supervised: {cut} of {len(pairs)} pairs carry more than num_negatives={n} hard negatives; "
                  f"each keeps its first {n}")

    def collate(self, items: list) -> dict:
        pairs = items[0] if self.ordered else items
        cfg = self.config
        texts, instructions, owner = [], [], []  # owner: (pair index, role) of each text
        for i, p in enumerate(pairs):
            texts.append(p.query)
            instructions.append(p.instruction or cfg.query_instruction)
            owner.append((i, "query"))
        document_instructions = [getattr(p, "document_instruction", None) or cfg.document_instruction for p in pairs]
        for i, p in enumerate(pairs):
            texts.append(p.positive)
            instructions.append(document_instructions[i])
            owner.append((i, "positive"))
        for i, p in enumerate(pairs):
            for negative in p.negatives:
                texts.append(negative)
                instructions.append(document_instructions[i])
                owner.append((i, "negative"))
        ids, masks = self.tokenize(texts, instructions)
        ok = poolable(masks)
        # A pair whose query or positive has nothing to pool is dropped whole; a negative alone.
        broken = {i for (i, role), good in zip(owner, ok) if not good and role != "negative"}
        keep = [good and i not in broken for (i, _), good in zip(owner, ok)]
        self.note_dropped(len(broken) + sum(1 for (i, role), good in zip(owner, ok)
                                             if role == "negative" and not good and i not in broken), "texts/pairs")
        kept = [j for j, k in enumerate(keep) if k]
        n = sum(1 for j in kept if owner[j][1] == "query")
        texts = [texts[j] for j in kept]
        keys = text_keys(texts)
        return {"ids": [ids[j] for j in kept], "masks": [masks[j] for j in kept], "n": n,
                "keys": (keys[:n], keys[n:2 * n], keys[2 * n:])}

    def example_key(self, pair):
        return frozenset((pair.query, pair.positive))

    def _split(self, vectors, n):
        return vectors[:n], vectors[n:2 * n], vectors[2 * n:]

    def _loss_from_vectors(self, vectors, inputs):
        queries, positives, negatives = self._split(vectors, inputs["n"])
        gather = self.gather and self.config.gather_across_processes and world()[1] > 1
        keys = inputs["keys"] if self.config.mask_false_negatives else None
        return info_nce(queries, positives, negatives, scale=self.config.scale, gather=gather, keys=keys)

    def loss(self, model, inputs):
        vectors = self.embed(model, self.view.collate(inputs["ids"], inputs["masks"]))
        loss, candidates = self._loss_from_vectors(vectors, inputs)
        return loss, {"negatives": candidates - 1, **self.counts()}

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
                parts.append(self.embed(model, self.view.collate(ids[chunk], masks[chunk])))
        vectors = torch.cat(parts).detach().requires_grad_()
        loss, candidates = self._loss_from_vectors(vectors, inputs)
        (loss * scale).backward()
        grads = vectors.grad
        self.tokens_seen -= sum(len(x) for x in ids)  # counted twice: forward-only then with graph
        for k, (chunk, state) in enumerate(zip(chunks, states)):
            last = k == len(chunks) - 1
            with contextlib.nullcontext() if last else no_sync(model):
                _set_rng_state(state)
                part = self.embed(model, self.view.collate(ids[chunk], masks[chunk]))
                backward((part * grads[chunk]).sum())
        return loss.detach(), {"negatives": candidates - 1, **self.counts()}


def _rng_state():
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


def _set_rng_state(state):
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
