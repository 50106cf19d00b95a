"""decoder2vec demo [--recipe distill|paper] [--quick] [--recipes FOLDER]"""

from __future__ import annotations

from ..pipeline.demo import DEFAULT_RECIPE, RECIPES, Demo

KEYWORDS_OF = (Demo,)
CLI_ONLY = {}


def add_arguments(p):
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=list(RECIPES),
                   help=f"distill ({RECIPES['distill']}): one stage learning all-MiniLM-L6-v2's similarities on "
                        f"Wikipedia sentences | paper ({RECIPES['paper']}): LLM2Vec's MNTP -> SimCSE -> supervised "
                        f"(default: {DEFAULT_RECIPE})")
    p.add_argument("--quick", action="store_true", help="the quick recipes (FOLDER/quick) and the quick suite")
    p.add_argument("--recipes", default=None,
                   help="any recipe folder, packaged or a path; overrides --recipe (`decoder2vec run --help` lists "
                        "the packaged ones)")
    p.add_argument("--output-dir", dest="output_dir", default=None,
                   help="where stage folders and results go (default: runs/demo-RECIPE[-quick]; runs/demo[-quick] "
                        "for paper; runs/demo-FOLDER[-quick] with --recipes)")
    p.add_argument("--suite", default=None, help="evaluation suite (default: 'default', or 'quick' with --quick)")


def run(args):
    Demo(recipe=args.recipe, recipes=args.recipes, output_dir=args.output_dir, quick=args.quick,
         suite=args.suite).run()
