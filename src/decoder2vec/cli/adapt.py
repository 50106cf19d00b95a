"""decoder2vec adapt --language da|de [--recipe distill|paper] [--model gemma3-270m] [--quick] [--output-dir D]"""

from __future__ import annotations

import argparse
import json

from ..data.languages import LANGUAGES, RECIPES
from ..pipeline.languages import DEFAULT_RECIPE, adapt
from ..training.config import STAGE_CONFIGS
from . import add_set_argument, parse_overrides

KEYWORDS_OF = (adapt,)
CLI_ONLY = {}


def add_arguments(p):
    p.add_argument("--language", required=True, choices=sorted(LANGUAGES),
                   help="da (Danish) or de (German)")
    p.add_argument("--model", default="gemma3-270m", help="base model (default: the packaged gemma3-270m)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=RECIPES,
                   help=f"distill: one stage learning all-MiniLM-L6-v2's similarities on en->LANG translations | "
                        f"paper: LLM2Vec's MNTP -> SimCSE -> supervised (default: {DEFAULT_RECIPE})")
    p.add_argument("--quick", action="store_true", help="the recipe's quick flavour (minutes on a 2-core CPU)")
    p.add_argument("--output-dir", dest="output_dir", default=None,
                   help="where each stage's Encoder folder and results.json go (default: runs/adapt-LANG-RECIPE[-quick], "
                        "runs/adapt-LANG[-quick] for paper)")
    p.add_argument("--stages", nargs="+", choices=list(STAGE_CONFIGS), default=None,
                   help="stages to run, in order (default: all)")
    p.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=True,
                   help="the language suite after each stage (--no-evaluate: skip it)")
    add_set_argument(p)


def run(args):
    final = adapt(args.language, model=args.model, recipe=args.recipe, quick=args.quick, output_dir=args.output_dir,
                  evaluate=args.evaluate, stages=tuple(args.stages) if args.stages else None,
                  overrides=parse_overrides(args.overrides))
    results = final.parent / "results.json"
    if args.evaluate and results.exists():
        print(json.dumps({k: round(v["average"], 4) for k, v in json.loads(results.read_text()).items()}))
    print(f"adapted encoder: {final}")
