"""`decoder2vec VERB ...`: a thin layer over the Python API; flags carry the kwargs' names.

Each verb is a small module in this package with `add_arguments(parser)` and `run(args)`, and
declares `KEYWORDS_OF`: the functions whose keyword arguments its flags set. A flag is the
keyword's name (`--batch-size` sets `batch_size`), its default and type come from the signature
(`add_keyword`), and tests/test_cli_names.py checks every verb: flag = Python keyword = YAML key.
Flags that set no keyword (input/output files, `--set`) are listed in the verb's `CLI_ONLY`.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU spinning threads made
# torch 10-20x slower (measured in tests/conftest.py); on an idle one the cost is negligible.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

from ..errors import Decoder2VecError  # noqa: E402
from ..training.config import parse_value  # noqa: E402

# verb -> (module, one-line help)
VERBS = {
    "encode": ("encode", "encode files or globs into vectors: resumable Parquet shards, or one .npy/.parquet file"),
    "index": ("index", "load a corpus encode's shards into a LanceDB table with an ANN index (resumable)"),
    "search": ("search", "search an index with the Encoder that encoded it: ids, scores and texts"),
    "info": ("info", "describe a model: family, size, max length, bidirectional"),
    "train": ("train", "train a stage (MNTP, SimCSE, supervised) from a YAML recipe"),
    "evaluate": ("evaluate", "run the offline evaluation suite (or chosen tasks) on a model"),
    "compare": ("compare", "compare evaluation results side by side and draw a chart"),
    "serve": ("serve", "serve a model over HTTP with OpenAI's /v1/embeddings API"),
    "export": ("export", "export a model as a sentence-transformers folder with a model card"),
    "demo": ("demo", "the main job: a text encoder end to end on the packaged SmolLM2-135M (--recipe distill | paper)"),
    "adapt": ("adapt", "run a language recipe (distill from all-MiniLM-L6-v2, or paper: MNTP, SimCSE, supervised) for Danish or German"),
    "run": ("run", "run a chain of recipe stages, evaluating after each (a folder or a packaged recipe)"),
    "merge": ("merge", "average the weights of compatible models into one Encoder folder (e.g. MNTP with its base)"),
    "mine": ("mine", "mine hard negatives for (query, positive) pairs into a pair file the supervised stage reads"),
    "finetune": ("finetune", "fine-tune a classification head (LoRA or full) on a labelled .jsonl/.csv file"),
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
    """--quantize / --compile / --fast: the Encoder.from_pretrained keywords of the same names."""
    parser.add_argument("--quantize", choices=["int8", "bf16", "int8-activations"], default=None,
                        help="int8 linear layers for CPU inference; bf16: only the matmuls in bf16 (torch); "
                             "int8-activations: int8 weights and activations (openvino) (docs/performance.md)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model: faster encoding after a one-time compile")
    parser.add_argument("--fast", action="store_true",
                        help="on CPU, the fastest engine that passed the accuracy gate on this CPU class "
                             "(`decoder2vec info` names it; docs/performance.md); default: exact fp32")


def add_model_argument(parser: argparse.ArgumentParser, *, positional: bool = False) -> None:
    help_text = "hub id, local folder, .gguf file, or packaged name (default: smollm2-135m)"
    if positional:
        parser.add_argument("model", nargs="?", default=None, help=help_text)
    else:
        parser.add_argument("--model", default=None, help=help_text)


def add_keyword(parser: argparse.ArgumentParser, function, name: str, *, help: str, **kwargs) -> None:
    """A flag for `function`'s keyword `name`: `--name-with-dashes`, dest=name, the signature's
    default, an int/float type from that default, and --name/--no-name for a bool."""
    parameter = inspect.signature(function).parameters[name]
    default = kwargs.pop("default", parameter.default if parameter.default is not inspect.Parameter.empty else None)
    flag = "--" + name.replace("_", "-")
    if isinstance(default, bool):
        kwargs.setdefault("action", argparse.BooleanOptionalAction)
    elif isinstance(default, (int, float)) and "type" not in kwargs and "choices" not in kwargs:
        kwargs["type"] = type(default)
    parser.add_argument(flag, dest=name, default=default, help=help, **kwargs)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key (YAML value: 200, 1e-4, true, [a, b]); repeatable")


def parse_overrides(items: list[str]) -> dict:
    """--set KEY=VALUE items -> {key: YAML-parsed value}; the keys are recipe keys."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise Decoder2VecError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out
