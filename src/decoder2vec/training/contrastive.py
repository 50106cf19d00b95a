"""Shared by SimCSE and supervised training: the model is an Encoder, so tokenization,
instructions and pooling are exactly those used at inference."""

from __future__ import annotations

import torch

from ..encoder import Batch, Encoder
from ..errors import Decoder2VecError
from .dropout import set_dropout
from .stage import Stage


class EncoderStage(Stage):
    def load(self) -> None:
        cfg = self.config
        self.encoder = Encoder.from_pretrained(cfg.model, pooling=cfg.pooling, dtype=cfg.dtype)
        self.net, self.tokenizer = self.encoder.model, self.encoder.tokenizer
        self.encoder_config = self.encoder.config
        # Training length is the recipe's; the saved Encoder keeps its own inference max_length.
        self.inference_max_length = self.encoder.config.max_length
        self.encoder.config.max_length = cfg.max_length
        self._restore_dropout = set_dropout(self.net, attention=cfg.attention_dropout, hidden=cfg.hidden_dropout)

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

    def eval_batch(self, part: list) -> list:
        """Held-out examples -> what collate() takes."""
        return part

    def embed(self, model, batch: Batch) -> torch.Tensor:
        # Encoder.embed runs self.model; point it at the module the Trainer hands us (the peft
        # model, or its DDP wrapper) so distributed training sees the forward.
        self.encoder.model = model
        self.tokens_seen += int(batch.attention_mask.sum())
        return self.encoder.embed(batch)

    def finish(self) -> None:
        self._restore_dropout()
        self.encoder.config.max_length = self.inference_max_length
