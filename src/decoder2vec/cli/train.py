"""decoder2vec train RECIPE.yaml [--set key=value ...]

Runs one stage. Recipe keys, --set keys and `train()` keyword arguments are the same names.
Launch with `accelerate launch -m decoder2vec.cli train ...` or `torchrun` for several processes.
"""

from __future__ import annotations

from ..errors import Decoder2VecError, choices_error
from ..training import train
from ..training.config import STAGE_CONFIGS, help_table, parse_value


def add_arguments(p):
    p.add_argument("recipe", nargs="?", help="YAML recipe (e.g. recipes/smollm2-135m/mntp.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key (YAML value: 200, 1e-4, true, [a, b]); repeatable")
    p.add_argument("--keys", dest="keys", default=None, metavar="STAGE",
                   help="list the keys a stage takes (mntp, simcse, supervised) and exit")


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise Decoder2VecError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def run(args):
    if args.keys:
        if args.keys not in STAGE_CONFIGS:
            raise choices_error("stage", args.keys, STAGE_CONFIGS)
        for key, default, text in help_table(args.keys):
            print(f"{key:30} {default!r:28} {text}")
        return 0
    if not args.recipe:
        raise Decoder2VecError("give a recipe file, e.g. decoder2vec train recipes/smollm2-135m/mntp.yaml")
    folder = train(args.recipe, **parse_overrides(args.overrides))
    print(folder)
    return 0
