"""`decoder2vec VERB ...`: a thin layer over the Python API; flags carry the kwargs' names.

Each verb is a small module in this package with `add_arguments(parser)` and `run(args)`, and
declares `KEYWORDS_OF`: the functions whose keyword arguments its flags set. A flag is the
keyword's name (`--batch-size` sets `batch_size`), its default and type come from the signature
or the dataclass field (`add_keyword`; the encode options' flags all come from EncodeOptions,
`add_encode_options`), and tests/test_cli_names.py checks every verb: flag = Python keyword = YAML
key, with the keyword's type (and EncodeOptions' defaults). Flags that set no keyword
(input/output files, `--set`) are listed in the verb's `CLI_ONLY`.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU spinning threads made
# torch 10-20x slower (measured in tests/conftest.py); on an idle one the cost is negligible.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
import typing  # noqa: E402

from ..encode_options import EncodeOptions, flag_fields  # noqa: E402
from ..encoder import Encoder  # noqa: E402
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
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except FlagError as exc:  # a bad number: one line, as every other bad input (not argparse's usage block)
        print(f"decoder2vec {next((a for a in argv if a in VERBS), '')}: error: {exc}", file=sys.stderr)
        return 2
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


class FlagError(Exception):
    """A flag's value is not a number (or below its least value). Not a ValueError on purpose:
    argparse turns those into its usage block and exit; `main` prints this one as one line."""


class Number:
    """The argparse `type` of an int or float flag: `kind` converts, a bad value is a FlagError
    naming the flag. tests/test_cli_names.py reads `kind` as the flag's type."""

    def __init__(self, kind: type, flag: str, minimum: int | float | None = None):
        self.kind, self.flag, self.minimum = kind, flag, minimum
        self.__name__ = kind.__name__  # argparse names the type in some messages

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            raise FlagError(f"{self.flag} must be {'an integer' if self.kind is int else 'a number'}, "
                            f"got {text!r}") from None
        if self.minimum is not None and value < self.minimum:
            raise FlagError(f"{self.flag} must be >= {self.minimum}, got {value}")
        return value


def flag_type(hint, default=None) -> type | None:
    """bool, int, float or str: the one such type in an annotation (`int | None` -> int), else the
    default's type; None when neither says."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    scalars = [a for a in args if a in (bool, int, float, str)]
    if len(scalars) == 1:
        return scalars[0]
    return type(default) if isinstance(default, (bool, int, float, str)) else None


def keyword_spec(target, name: str) -> tuple:
    """(default, type hint, metadata) of `target`'s keyword `name`: a dataclass field (with its
    metadata: help, choices, minimum) or a function's parameter."""
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):  # an annotation that does not evaluate here: the default says the type
        hints = {}
    if dataclasses.is_dataclass(target):
        field = {f.name: f for f in dataclasses.fields(target)}[name]
        default = field.default if field.default is not dataclasses.MISSING else None
        return default, hints.get(name), dict(field.metadata)
    parameter = inspect.signature(target).parameters[name]
    default = parameter.default if parameter.default is not inspect.Parameter.empty else None
    return default, hints.get(name), {}


def add_keyword(parser: argparse.ArgumentParser, target, name: str, *, help: str | None = None,
                minimum: int | float | None = None, **kwargs) -> None:
    """A flag for `target`'s keyword `name` (a function's parameter or a dataclass's field):
    `--name-with-dashes`, dest=name, its default, and its type from the annotation (else the
    default): --name/--no-name for a bool, a `Number` for an int or float. A dataclass field's
    metadata gives the help, choices and least value unless given here."""
    default, hint, metadata = keyword_spec(target, name)
    default = kwargs.pop("default", default)
    help = help if help is not None else metadata.get("help")
    minimum = minimum if minimum is not None else metadata.get("minimum")
    if metadata.get("choices") is not None:
        kwargs.setdefault("choices", metadata["choices"])
    flag = "--" + name.replace("_", "-")
    kind = flag_type(hint, default)
    if kind is bool:
        kwargs.setdefault("action", argparse.BooleanOptionalAction)
    elif kind in (int, float) and "type" not in kwargs and "choices" not in kwargs:
        kwargs["type"] = Number(kind, flag, minimum)
    parser.add_argument(flag, dest=name, default=default, help=help, **kwargs)


def add_encode_options(parser: argparse.ArgumentParser, names=(), *, help: dict[str, str] | None = None) -> None:
    """One flag per EncodeOptions field that is a flag (or those `names`): its name, type, default,
    choices and help from the dataclass. `help` replaces a field's help where a verb means more."""
    for field in flag_fields(names):
        add_keyword(parser, EncodeOptions, field.name, help=(help or {}).get(field.name))


def keywords_of(args: argparse.Namespace, target) -> dict:
    """The parsed flags that are `target`'s keywords (its keyword-only parameters, or a dataclass's
    fields): what the verb hands it, with no dict spelled out by hand."""
    if dataclasses.is_dataclass(target):
        names = [f.name for f in dataclasses.fields(target)]
    else:
        names = [p.name for p in inspect.signature(target).parameters.values() if p.kind is p.KEYWORD_ONLY]
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


# The loader whose keywords are flags, taken when the CLI is imported: a test that stands in for
# Encoder.from_pretrained (to prove a flag is checked before any load) must not change the flags.
FROM_PRETRAINED = Encoder.from_pretrained


def add_max_length_argument(parser: argparse.ArgumentParser) -> None:
    """--max-length: Encoder.from_pretrained's keyword (an int, or the model folder's value)."""
    add_keyword(parser, FROM_PRETRAINED, "max_length", minimum=1,
                help="tokens per text, instruction included; longer texts are cut (default: the model folder's)")


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
