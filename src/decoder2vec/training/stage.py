"""What the engine needs from a stage: data -> collator -> loss, plus the model to adapt."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from ..errors import Decoder2VecError
from ..folder.config import EncoderConfig
from .config import STAGE_CONFIGS, StageConfig
from .losses import world

# config class -> its Stage: filled as each stage's module defines its class (see Stage.config_class).
_STAGES: dict[type, type] = {}


class Stage:
    """One training stage. Subclasses set `net` (the transformers model LoRA is added to),
    `tokenizer` and `encoder_config` in `load()`, and implement dataset/collate/loss.

    A stage is registered once: its config class in config.STAGE_CONFIGS (the one list of stages,
    read by the CLI and the pipeline without loading any stage), and here by naming that class as
    `config_class`; its name is the config's `stage` (stage_class finds it)."""

    config_class: type | None = None  # set by every stage that trains (not by EncoderStage, a base)
    name = ""
    # True when dataset() returns items in the order they must be trained (the engine then uses a
    # sequential sampler; accelerate deals item i to process i % world size).
    ordered = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "config_class" in cls.__dict__:
            cls.name = cls.config_class.stage
            _STAGES[cls.config_class] = cls

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


def stage_class(name: str) -> type[Stage]:
    """The Stage that trains `name` (a key of STAGE_CONFIGS); its module must be imported (engine.py
    imports every stage)."""
    config = STAGE_CONFIGS[name]
    if config not in _STAGES:
        raise Decoder2VecError(f"stage {name!r} has a config ({config.__name__}) but no Stage with "
                               f"config_class = {config.__name__} was imported (training/engine.py imports them)")
    return _STAGES[config]


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


def task_blocks(items: list, per_device: int, size: int, rng: random.Random,
                key=lambda item: item.task) -> list[list]:
    """Items in training order: blocks of per_device x size items of one task each (`key`: an
    item's task, by default a pair's data source), shuffled, every block cut into `size`
    consecutive per-process batches (process r trains item k * size + r at step k, see
    engine.StageTrainer._get_train_sampler). A task's tail that does not fill a block is left out,
    as in the reference. The supervised and distill stages' batch_per_task."""
    block = per_device * size
    by_task: dict[str, list] = {}
    for item in items:
        by_task.setdefault(key(item), []).append(item)
    blocks = [same[i:i + block] for same in by_task.values() for i in range(0, len(same) - block + 1, block)]
    rng.shuffle(blocks)
    return [b[r * per_device:(r + 1) * per_device] for b in blocks for r in range(size)]
