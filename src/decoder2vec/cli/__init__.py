"""`decoder2vec VERB ...`: a thin layer over the Python API; flags carry the kwargs' names.

Each verb is a small module in this package with `add_arguments(parser)` and `run(args)`.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU spinning threads made
# torch 10-20x slower (measured in tests/conftest.py); on an idle one the cost is negligible.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import importlib
import logging
import sys

from ..errors import Decoder2VecError

# verb -> (module, one-line help)
VERBS = {
    "encode": ("encode", "encode texts from a file into vectors (.npy or .parquet)"),
    "info": ("info", "describe a model: family, size, max length, bidirectional"),
    "train": ("train", "train a stage (MNTP, SimCSE, supervised) from a YAML recipe"),
    "evaluate": ("evaluate", "run the offline evaluation suite (or chosen tasks) on a model"),
    "compare": ("compare", "compare evaluation results side by side and draw a chart"),
    "serve": ("serve", "serve a model over HTTP with OpenAI's /v1/embeddings API"),
    "export": ("export", "export a model as a sentence-transformers folder with a model card"),
    "demo": ("demo", "the main job: LLM2Vec end to end on the packaged SmolLM2-135M"),
    "adapt": ("adapt", "run a language recipe (MNTP, SimCSE, supervised) for Danish or German"),
    "run": ("run", "run a chain of recipe stages, evaluating after each (a folder or a packaged recipe)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="decoder2vec", description="Text embeddings from decoder-only LLMs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module, help_text) in VERBS.items():
        mod = importlib.import_module(f"{__name__}.{module}")
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        mod.add_arguments(verb_parser)
        verb_parser.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args._run(args) or 0
    except Decoder2VecError as exc:
        print(f"decoder2vec {args.verb}: error: {exc}", file=sys.stderr)
        return 2


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """--quantize / --compile: the Encoder.from_pretrained keywords of the same names."""
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="int8 linear layers for CPU inference (docs/performance.md)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model: faster encoding after a one-time compile")


def add_model_argument(parser: argparse.ArgumentParser, *, positional: bool = False) -> None:
    help_text = "hub id, local folder, .gguf file, or packaged name (default: smollm2-135m)"
    if positional:
        parser.add_argument("model", nargs="?", default=None, help=help_text)
    else:
        parser.add_argument("--model", default=None, help=help_text)
