"""decoder2vec finetune [RECIPE.yaml] [--model M --data FILE ... --output-dir DIR] [--set key=value ...]

Trains a classification head on a labelled .jsonl/.csv file (the finetune stage,
training/finetune.py): from a recipe, from flags, or both (flags override the recipe). Flags,
--set keys, recipe keys and `train()` keyword arguments are the same names.
"""

from __future__ import annotations

import argparse

from ..errors import Decoder2VecError
from ..training import train
from ..training.config import FinetuneConfig, parse_value
from ..training.finetune import TASKS
from . import add_keyword, add_set_argument, parse_overrides
from .train import recipe_path

KEYWORDS_OF = (train, FinetuneConfig)
CLI_ONLY = {}

# (key, argparse options, help): every flag defaults to None, so a flag not given leaves the
# recipe's value (or the stage's default) alone.
FLAGS = [
    ("model", {}, "model to fine-tune: packaged name, hub id, folder (an Encoder folder) or .gguf"),
    ("data", {"nargs": "+", "metavar": "FILE"}, "labelled .jsonl/.csv files (a text and a label column)"),
    ("output_dir", {}, "where the classifier folder is written"),
    ("task", {"choices": TASKS}, "sequence: one label per text (default) | token: one label per word (.jsonl rows "
                                 "of a list of words and a list of as many labels)"),
    ("text_column", {}, "text column of the files (default: text)"),
    ("label_column", {}, "label column of the files (default: label)"),
    ("labels", {"nargs": "+", "metavar": "NAME"}, "label names in id order (default: every label, sorted)"),
    ("full", {"action": argparse.BooleanOptionalAction}, "train every weight instead of a LoRA adapter"),
    ("max_steps", {"type": int}, "optimizer steps"),
    ("per_device_train_batch_size", {"type": int}, "rows per step"),
    ("learning_rate", {"type": parse_value}, "peak learning rate"),
    ("train_max_length", {"type": int}, "tokens per text while training (longer texts are cut)"),
    ("eval_examples", {"type": int}, "rows held out and scored (accuracy) before and after training"),
    ("force", {"action": "store_true"}, "train again over a finished output whose recipe differs"),
]


def add_arguments(p):
    p.add_argument("recipe", nargs="?", help="YAML recipe of a finetune stage (optional: flags can say it all)")
    for key, options, text in FLAGS:
        add_keyword(p, FinetuneConfig, key, default=None, help=text, **options)
    add_set_argument(p)


def run(args):
    keys = parse_overrides(args.overrides)
    keys.update({key: getattr(args, key) for key, _, _ in FLAGS if getattr(args, key) is not None})
    recipe = recipe_path(args.recipe) if args.recipe else {}
    keys["stage"] = "finetune"  # a recipe of another stage is an error naming its first foreign key
    if not args.recipe and not keys.get("data"):
        raise Decoder2VecError("give a recipe, or --data FILE (labelled .jsonl/.csv) and --output-dir DIR")
    folder = train(recipe, **keys)
    print(folder)
    return 0
