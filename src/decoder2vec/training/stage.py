"""What the engine needs from a stage: data -> collator -> loss, plus the model to adapt."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..encoder import CONFIG_NAME, EncoderConfig
from ..errors import Decoder2VecError
from .config import StageConfig
from .losses import world


class Stage:
    """One training stage. Subclasses set `net` (the transformers model LoRA is added to),
    `tokenizer` and `encoder_config` in `load()`, and implement dataset/collate/loss."""

    name = ""
    # True when dataset() returns items in the order they must be trained (the engine then uses a
    # sequential sampler; accelerate deals item i to process i % world size).
    ordered = False

    def __init__(self, config: StageConfig):
        self.config = config
        self.net = None
        self.tokenizer = None
        self.encoder_config: EncoderConfig | None = None
        self.trainable_token_indices: list[int] | None = None
        self.tokens_seen = 0  # real (non-pad) tokens through the backbone; for tokens/s
        self.step_seed = 0  # set by the engine before every micro-batch: (seed, step, micro-step)

    # -- set up
    def load(self) -> None:
        raise NotImplementedError

    def attach(self, peft_model) -> None:
        """Called once the LoRA adapter is in place (the peft model wraps self.net)."""

    def dataset(self) -> list:
        raise NotImplementedError

    def resolved(self) -> dict:
        """{recipe key: the value the stage derived for it} where a key may be left to the data
        (finetune's labels: null = every label, sorted): a resume must derive the same."""
        return {}

    # -- per step
    def collate(self, items: list) -> dict:
        raise NotImplementedError

    def loss(self, model, inputs: dict) -> tuple[torch.Tensor, dict]:
        """(loss, numbers to log). `model` is what the Trainer hands over (maybe DDP-wrapped):
        forwards go through it so distributed training syncs gradients."""
        raise NotImplementedError

    # -- around training
    def evaluate(self, model) -> dict:
        return {}

    def backbone(self, merged) -> torch.nn.Module:
        """The model to save as the Encoder's backbone, from the merged transformers model."""
        return merged

    def finish(self) -> None:
        """Undo training-only settings (dropout, lengths) before the model is saved."""

    def extra_modules(self) -> dict:
        """{name: module} trained alongside the LoRA parameters (e.g. distill's projection): the
        engine adds them to the optimizer, saves them in every checkpoint and reloads them on resume."""
        return {}

    def write_extras(self, folder: Path) -> None:
        """Write stage-specific files into the finished output folder (before it is swapped in)."""


def previous_encoder_config(source: str) -> EncoderConfig | None:
    """The EncoderConfig of a decoder2vec folder (a previous stage's output), else None."""
    path = Path(source) / CONFIG_NAME
    if path.is_file():
        return EncoderConfig.from_dict(json.loads(path.read_text()))
    return None


def check_enough(items: list, config: StageConfig, what: str) -> list:
    _, size = world()
    need = config.per_device_train_batch_size * size
    if not items:
        raise Decoder2VecError(f"{config.stage}: no training {what} in {config.data}")
    if len(items) < need:
        raise Decoder2VecError(
            f"{config.stage}: only {len(items)} training {what} in {config.data}, fewer than one batch "
            f"(per_device_train_batch_size={config.per_device_train_batch_size} x {size} process(es))"
        )
    return items
