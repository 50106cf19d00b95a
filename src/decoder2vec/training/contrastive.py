"""Shared by SimCSE and supervised training: the model is an Encoder, so tokenization,
instructions and pooling are exactly those used at inference."""

from __future__ import annotations

import torch

from ..encoder import Batch, Encoder
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

    def embed(self, model, batch: Batch) -> torch.Tensor:
        # Encoder.embed runs self.model; point it at the module the Trainer hands us (the peft
        # model, or its DDP wrapper) so distributed training sees the forward.
        self.encoder.model = model
        self.tokens_seen += int(batch.attention_mask.sum())
        return self.encoder.embed(batch)

    def finish(self) -> None:
        self._restore_dropout()
        self.encoder.config.max_length = self.inference_max_length
