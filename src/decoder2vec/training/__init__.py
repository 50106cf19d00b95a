"""Training: MNTP -> SimCSE -> supervised contrastive, each a LoRA stage whose output is an
Encoder folder (merged weights) that the next stage loads and adapts again.

    from decoder2vec.training import train
    folder = train("recipes/smollm2-135m/mntp.yaml", max_steps=20)
"""

from __future__ import annotations

import dataclasses

from pathlib import Path

from .config import MNTPConfig, SimCSEConfig, StageConfig, SupervisedConfig, load_recipe, make_config
from .engine import run_stage


def train(recipe_or_config, *, callbacks: list | None = None, **overrides) -> Path:
    """Run one stage from a recipe file, a dict, or a stage config; keyword arguments override
    recipe keys. Returns the output folder (an Encoder folder)."""
    if isinstance(recipe_or_config, StageConfig):
        config = make_config({**dataclasses.asdict(recipe_or_config), **overrides})
    else:
        config = load_recipe(recipe_or_config, **overrides)
    return run_stage(config, callbacks=callbacks)


__all__ = ["train", "load_recipe", "make_config", "StageConfig", "MNTPConfig", "SimCSEConfig", "SupervisedConfig"]
