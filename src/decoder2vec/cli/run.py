"""decoder2vec run RECIPES [--model M] [--output-dir D] [--suite S] [--stages ...] [--set KEY=VALUE] [--dry-run]

RECIPES is a folder of stage recipes (<stage>.yaml, optional suite.yaml) or a packaged one by
name, e.g. `smollm2-135m/quick` or `gemma3-270m-da`. Trains each stage from the previous one and
evaluates after each; finished stages and evaluations are skipped, so a killed run resumes.
"""

from __future__ import annotations

import argparse
import json

from ..pipeline.runner import Pipeline, packaged_recipe_names
from ..training.config import STAGE_CONFIGS
from . import add_set_argument, parse_overrides


KEYWORDS_OF = (Pipeline,)
CLI_ONLY = {"dry_run": "validate and print the plan"}


def add_arguments(p):
    p.add_argument("recipes", help="a folder of <stage>.yaml recipes, or a packaged one: "
                                   + ", ".join(packaged_recipe_names()))
    p.add_argument("--model", default=None, help="base model (default: the first recipe's model)")
    p.add_argument("--output-dir", dest="output_dir", default=None,
                   help="where stage folders and results go (default: the folder of the recipes' output_dir)")
    p.add_argument("--suite", default=None,
                   help="evaluation suite after each stage (default: the folder's suite.yaml, else 'default')")
    p.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate after every stage (--no-evaluate: train only)")
    p.add_argument("--stages", nargs="+", choices=list(STAGE_CONFIGS), default=None,
                   help="stages to run, in chain order (default: every stage the folder has)")
    add_set_argument(p)
    p.add_argument("--dry-run", action="store_true",
                   help="validate every stage's recipe and print the plan; train nothing")


def run(args):
    pipeline = Pipeline(args.recipes, model=args.model, output_dir=args.output_dir, suite=args.suite,
                        evaluate=args.evaluate, stages=tuple(args.stages) if args.stages else None,
                        overrides=parse_overrides(args.overrides))
    if args.dry_run:
        for stage, config in pipeline.configs().items():
            print(f"{stage:<12} {pipeline.chain[stage]}  {config.model} -> {config.output_dir}")
        print(f"evaluate: {pipeline.suite if args.evaluate else 'no'}; results: {pipeline.output_dir / 'results.json'}")
        return
    done = pipeline.run()
    print(json.dumps({row: round(r["averages"]["all"], 4) for row, r in done["rows"].items()}))
    print(f"final encoder: {done['final']}")
