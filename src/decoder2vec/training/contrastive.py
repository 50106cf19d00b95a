"""Shared by SimCSE and supervised training: the model is an Encoder, so tokenization,
instructions and pooling are exactly those used at inference.

Two Encoders share the one model: `encoder` is what gets saved (its inference max_length and
instruction template untouched), `view` is what training tokenizes with (train_max_length, and
the recipe's instruction_template if it has one). Nothing is swapped back and forth.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch

from ..model.bidirectional import _configs
from ..encoder import Batch, Encoder
from ..errors import Decoder2VecError
from ..folder.config import apply_recipe_keys
from ..model.pooling import pool
from .dropout import set_dropout
from .losses import world
from .stage import Stage, task_blocks


class EncoderStage(Stage):
    # Whether training texts are wrapped in the folder's chat format. LLM2Vec's supervised
    # collator wraps them (prepare_for_tokenization), its SimCSE collator does not.
    wraps_chat = True

    def load(self) -> None:
        cfg = self.config
        self.encoder = Encoder.from_pretrained(cfg.model, pooling=cfg.pooling, dtype=cfg.dtype)
        self.net, self.tokenizer = self.encoder.model, self.encoder.tokenizer
        self.encoder_config = self.encoder.config
        apply_recipe_keys(self.encoder_config, pool_span=cfg.pool_span, chat_format=cfg.chat_format)
        template = getattr(cfg, "instruction_template", None) or self.encoder.config.instruction_template
        chat = self.encoder_config.chat_format if self.wraps_chat else None
        self.view = Encoder(self.net, self.tokenizer, dataclasses.replace(
            self.encoder.config, max_length=cfg.train_max_length, instruction_template=template, chat_format=chat,
            stages=[]))
        self._restore_dropout = set_dropout(self.net, attention=cfg.attention_dropout, hidden=cfg.hidden_dropout)
        # A training forward must not build a KV cache it never reads (transformers builds one
        # whenever the config's use_cache is on).
        self._use_cache = [(c, c.use_cache) for c in _configs(self.net.config) if hasattr(c, "use_cache")]
        for c, _ in self._use_cache:
            c.use_cache = False
        self.truncated = self.tokenized = self.dropped = 0
        self._warned = set()

    def tokenize(self, texts: list[str], instructions: list | None = None):
        """The view's tokenize, counting texts cut at train_max_length (warned once, logged always)."""
        ids, masks, truncated = self.view.tokenize(texts, instructions)
        self.truncated += truncated
        self.tokenized += len(texts)
        if truncated and "truncated" not in self._warned:
            self._warned.add("truncated")
            warnings.warn(f"{self.config.stage}: {truncated} of {len(texts)} texts in a batch are longer than "
                          f"train_max_length={self.config.train_max_length} tokens and were truncated; the running "
                          "count is logged as truncated_texts", stacklevel=2)
        return ids, masks

    def note_dropped(self, count: int, what: str) -> None:
        """Rows with nothing to pool (empty text, or an instruction that fills train_max_length) are
        dropped, never trained on as a zero vector."""
        if not count:
            return
        self.dropped += count
        if "dropped" not in self._warned:
            self._warned.add("dropped")
            warnings.warn(f"{self.config.stage}: dropped {count} {what} with no text token left to pool (empty, or "
                          f"the instruction fills train_max_length={self.config.train_max_length}); the running "
                          "count is logged as dropped_rows", stacklevel=2)

    def counts(self) -> dict:
        return {"truncated_texts": self.truncated, "dropped_rows": self.dropped}

    # Held-out examples (set by dataset()) and whether the loss gathers across processes; the
    # held-out loss never does (each process evaluates the same examples on its own).
    eval_items: tuple | list = ()
    gather = True
    # SimCSE needs dropout when evaluating too (without it both copies are identical).
    eval_with_dropout = False

    def hold_out(self, items: list, what: str) -> list:
        """Keep the first eval_examples (already shuffled) aside for evaluate(); never trained on."""
        cfg = self.config
        held = min(cfg.eval_examples, len(items) // 5)  # never more than a fifth of a small set
        if cfg.eval_examples and held < 2:
            held = 0  # an InfoNCE loss needs at least two examples; a tiny set keeps them all
        self.eval_items = items[:held]
        # A pair held out in one direction must not be trained on in the other.
        keys = {self.example_key(x) for x in self.eval_items}
        rest = [x for x in items[held:] if self.example_key(x) not in keys]
        if not rest:
            raise Decoder2VecError(f"{cfg.stage}: no training {what} left in {cfg.data}")
        return rest

    def evaluate(self, model) -> dict:
        """The stage's loss on the held-out examples, same batches and dropout masks every time:
        comparable before and after training (the training loss is per-batch noise)."""
        if len(self.eval_items) < 2:
            return {}
        was_training, state = model.training, torch.get_rng_state()
        model.train(self.eval_with_dropout)
        torch.manual_seed(1234)
        size, total, count = max(2, self.config.per_device_train_batch_size), 0.0, 0
        self.gather, tokens = False, self.tokens_seen
        try:
            with torch.no_grad():
                for start in range(0, len(self.eval_items), size):
                    part = self.eval_items[start:start + size]
                    if len(part) < 2:  # a one-example tail has no negative
                        break
                    loss, _ = self.loss(model, self.collate(self.eval_batch(part)))
                    total, count = total + float(loss) * len(part), count + len(part)
        finally:
            self.gather, self.tokens_seen = True, tokens
            model.train(was_training)
            torch.set_rng_state(state)
        return {f"{self.name}_eval_loss": round(total / count, 4), f"{self.name}_eval_examples": count}

    def example_key(self, item):
        return item

    @property
    def ordered(self) -> bool:
        # batch_per_task (supervised, distill): each dataset item is a whole per-process batch of one
        # data source, in training order (source_batches).
        return getattr(self.config, "batch_per_task", False)

    def source_batches(self, items: list, rng, what: str, key=lambda item: item.task) -> list[list]:
        """batch_per_task's dataset items: stage.task_blocks of `items` by data source (`key`)."""
        cfg = self.config
        blocks = task_blocks(items, cfg.per_device_train_batch_size, world()[1], rng, key=key)
        if not blocks:
            raise Decoder2VecError(
                f"{cfg.stage}: no data source in {cfg.data} has a full block of per_device_train_batch_size x "
                f"processes = {cfg.per_device_train_batch_size * world()[1]} {what} (or set batch_per_task: false)")
        return blocks

    def eval_batch(self, part: list) -> list:
        """Held-out examples -> what collate() takes: one item that is their batch where items are batches."""
        return [part] if self.ordered else part

    def embed(self, model, batch: Batch) -> torch.Tensor:
        # The view runs its .model; point it at the module the Trainer hands us (the peft model,
        # or its DDP wrapper) so distributed training sees the forward.
        self.view.model = model
        self.tokens_seen += int(batch.attention_mask.sum())
        batch = batch.to(self.view.device)
        groups = length_groups(batch.attention_mask.sum(dim=1).tolist())
        if len(groups) == 1:
            return self._embed_padded(batch)
        # Short queries padded to their documents' length spend most of a step on padding: each
        # group of similar lengths runs as its own, narrower batch (the same vectors).
        order = torch.tensor([row for group in groups for row in group], device=batch.input_ids.device)
        parts = [self._embed_padded(narrow(batch, torch.tensor(group, device=order.device))) for group in groups]
        return torch.cat(parts).index_select(0, torch.argsort(order))

    def _embed_padded(self, batch: Batch) -> torch.Tensor:
        states = self.view.hidden_states(batch)
        # Pool and score in fp32: a bf16 mean over hundreds of tokens, and bf16 cosines times a
        # scale of 50, lose the differences the loss is made of.
        return pool(states.float(), batch.pool_mask, batch.attention_mask, self.config.pooling)

    def finish(self) -> None:
        self._restore_dropout()
        for c, value in self._use_cache:
            c.use_cache = value


def poolable(masks: list) -> list[bool]:
    """Whether each tokenized text has at least one token to pool."""
    return [bool(np.any(m)) for m in masks]


# A batch is split by length only where that saves at least this share of its padded tokens.
MIN_SAVING = 0.05
MAX_GROUPS = 4


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Rows of a batch in groups of similar token counts (each group's rows in length order): the
    fewest groups, at most MAX_GROUPS, whose padded tokens (rows x longest row, summed over groups)
    come within MIN_SAVING of the best split; one group when splitting saves less than that."""
    order = sorted(range(len(lengths)), key=lambda row: (lengths[row], row))
    sizes = [lengths[row] for row in order]
    n = len(sizes)
    # best[k][j]: fewest padded tokens of the first j rows (in length order) in k groups; cut[k][j]: its last cut.
    best = [[0] + [sizes[j - 1] * j for j in range(1, n + 1)]]
    cut = [[0] * (n + 1)]
    for k in range(1, min(MAX_GROUPS, n)):
        row_best, row_cut = [0] * (n + 1), [0] * (n + 1)
        for j in range(1, n + 1):
            row_best[j], row_cut[j] = min((best[k - 1][i] + sizes[j - 1] * (j - i), i) for i in range(j))
        best.append(row_best)
        cut.append(row_cut)
    goal = best[-1][n] + MIN_SAVING * best[0][n]
    k = next(k for k in range(len(best)) if best[k][n] <= goal)
    if best[0][n] - best[k][n] < MIN_SAVING * best[0][n]:
        k = 0
    bounds, j = [], n
    for level in range(k, -1, -1):
        i = cut[level][j]
        bounds.append((i, j))
        j = i
    return [order[i:j] for i, j in reversed(bounds) if j > i]


def narrow(batch: Batch, rows: torch.Tensor) -> Batch:
    """These rows of a padded batch, cut to their longest text (padding is on one side, so the
    columns holding any of their tokens are contiguous)."""
    mask = batch.attention_mask.index_select(0, rows)
    used = mask.any(dim=0).nonzero().flatten()
    columns = slice(int(used[0]), int(used[-1]) + 1)
    return Batch(batch.input_ids.index_select(0, rows)[:, columns], mask[:, columns],
                 batch.pool_mask.index_select(0, rows)[:, columns])
