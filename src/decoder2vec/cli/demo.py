"""decoder2vec demo [--quick]"""

from __future__ import annotations

from ..demo import Demo

KEYWORDS_OF = (Demo,)
CLI_ONLY = {}


def add_arguments(p):
    p.add_argument("--quick", action="store_true", help="the quick recipes (RECIPES/quick) and the quick suite")
    p.add_argument("--recipes", default="smollm2-135m",
                   help="a packaged recipe folder (default: smollm2-135m; `decoder2vec run --help` lists them)")
    p.add_argument("--output-dir", dest="output_dir", default=None,
                   help="where stage folders and results go (default: runs/demo, or runs/demo-quick with --quick)")
    p.add_argument("--suite", default=None, help="evaluation suite (default: 'default', or 'quick' with --quick)")


def run(args):
    Demo(recipes=args.recipes, output_dir=args.output_dir, quick=args.quick, suite=args.suite).run()
