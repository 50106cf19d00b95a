"""decoder2vec train RECIPE.yaml [--set key=value ...]

Runs one stage. Recipe keys, --set keys and `train()` keyword arguments are the same names.
Launch with `accelerate launch -m decoder2vec.cli train ...` or `torchrun` for several processes.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import Decoder2VecError, choices_error
from ..training import train
from ..pipeline.runner import packaged_recipes
from ..training.config import STAGE_CONFIGS, StageConfig, help_table
from . import add_set_argument, parse_overrides


KEYWORDS_OF = (train, StageConfig)
CLI_ONLY = {"keys": "list the keys a stage takes"}


def add_arguments(p):
    p.add_argument("recipe", nargs="?", help="YAML recipe: a file, or a packaged one (e.g. smollm2-135m/mntp)")
    add_set_argument(p)
    p.add_argument("--force", action="store_true", default=None,
                   help="train again over a finished stage whose recipe differs (the recipe key force: true)")
    p.add_argument("--keys", dest="keys", default=None, metavar="STAGE",
                   help="list the keys a stage takes (mntp, simcse, supervised, distill) and exit")


def run(args):
    if args.keys:
        if args.keys not in STAGE_CONFIGS:
            raise choices_error("stage", args.keys, STAGE_CONFIGS)
        for key, default, text in help_table(args.keys):
            print(f"{key:30} {default!r:28} {text}")
        return 0
    if not args.recipe:
        raise Decoder2VecError("give a recipe file, e.g. decoder2vec train smollm2-135m/mntp")
    overrides = parse_overrides(args.overrides)
    if args.force:
        overrides["force"] = True
    folder = train(recipe_path(args.recipe), **overrides)
    print(folder)
    return 0


def recipe_path(recipe: str) -> str:
    """A recipe file that exists, else a packaged one named `<folder>/<stage>` (smollm2-135m/mntp)."""
    packaged = packaged_recipes() / f"{recipe}.yaml"
    if not Path(recipe).exists() and not Path(recipe).is_absolute() and packaged.is_file():
        return str(packaged)
    return recipe
