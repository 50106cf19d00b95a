"""EncodeOptions: the one definition of the encode keywords, with their types, defaults and help.

`Encoder.encode`, `Encoder.encode_tokens`, the corpus engines (local and Ray) and the server take
an EncodeOptions, or the same names as keyword arguments (`encoder.encode(texts, batch_size=8)`),
turned into one by `EncodeOptions.of`; the CLI's flags are generated from the fields
(`cli.add_encode_options`). A new option is a new field here: every surface gets it with the same
name, type and default (tests/test_cli_names.py checks the flags).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import Decoder2VecError, check_int, choices_error
from .model.precision import PRECISIONS

__all__ = ["EncodeOptions", "ON_EMPTY", "OUTPUT_VALUES", "flag_fields", "takes_encode_options"]

ON_EMPTY = ("error", "skip")
OUTPUT_VALUES = ("sentence_embedding", "token_embeddings")  # sentence-transformers' names


def _option(default, help: str, *, choices: tuple | None = None, minimum: int | None = None, flag: bool = True):
    """A field with its one-line help; `choices` and `minimum` are checked here and by the CLI.
    flag=False: no command-line flag (values a command line cannot carry, or that only Python uses)."""
    return field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum, "flag": flag})


@dataclass(frozen=True)
class EncodeOptions:
    """How texts are encoded (not which model: that is `Encoder.from_pretrained`'s keywords)."""

    instruction: str | Sequence[str | None] | None = _option(
        None, "instruction placed before every text (or one per text, in Python): read by the model, not pooled")
    batch_size: int = _option(32, "texts per model call at most", minimum=1)
    max_batch_tokens: int | None = _option(
        16384, "padded tokens per model call at most (texts are sorted by length first); None: batch_size alone",
        minimum=1)
    normalize_embeddings: bool = _option(False, "L2-normalise every vector")
    truncate_dim: int | None = _option(
        None, "keep each vector's first N dimensions (Matryoshka); None: all of them", minimum=1)
    precision: str = _option(
        "float32", "vector type, as sentence-transformers' quantize_embeddings; int8/uint8 need calibrated ranges",
        choices=PRECISIONS)
    calibration_embeddings: Any = _option(
        None, "float vectors of a representative set, whose ranges int8/uint8 use (else the Encoder's calibrate())",
        flag=False)
    on_empty: str = _option(
        "error", "an empty or whitespace-only text: stop naming it (error), or leave it out and say so (skip)",
        choices=ON_EMPTY)
    show_progress_bar: bool | None = _option(
        None, "a progress bar on stderr; None: for 256 texts or more when stderr is a terminal", flag=False)
    convert_to_tensor: bool = _option(False, "torch tensors instead of numpy arrays", flag=False)
    unpadded: bool | None = _option(
        None, "(torch backend) run each batch's texts end to end without padding (model/unpadded.py); "
              "None: when the model uses a flash-attention kernel")
    output_value: str = _option(
        "sentence_embedding", "sentence_embedding (one vector per text) or token_embeddings (see encode_tokens)",
        choices=OUTPUT_VALUES, flag=False)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, choices, minimum = getattr(self, f.name), f.metadata["choices"], f.metadata["minimum"]
            if choices is not None and (not isinstance(value, str) or value not in choices):
                raise choices_error(f.name, value, choices)
            optional = type(None) in typing.get_args(HINTS[f.name])
            if minimum is not None:
                check_int(f.name, value, minimum=minimum, optional=optional)
            if HINTS[f.name] in (bool, bool | None):
                _check_bool(f.name, value, optional=optional)
        instruction = self.instruction
        if not (instruction is None or isinstance(instruction, (str, list, tuple))):
            raise Decoder2VecError(f"instruction must be a string, None, or a list with one entry per text; got "
                                   f"{type(instruction).__name__}")

    @classmethod
    def of(cls, options: EncodeOptions | None = None, **keywords) -> EncodeOptions:
        """`options` with `keywords` replacing its values (EncodeOptions() when None): the one place
        where the keyword-argument form of every encode surface becomes an EncodeOptions."""
        unknown = [name for name in keywords if name not in NAMES]
        if unknown:
            raise choices_error("encode option", unknown[0], NAMES)
        if options is None:
            return cls(**keywords)
        if not isinstance(options, cls):
            raise Decoder2VecError(f"options must be an EncodeOptions, got {type(options).__name__}")
        return dataclasses.replace(options, **keywords) if keywords else options

    def replace(self, **changes) -> EncodeOptions:
        """A copy with `changes` (checked like the constructor's values)."""
        return EncodeOptions.of(self, **changes)


NAMES = tuple(f.name for f in dataclasses.fields(EncodeOptions))
HINTS = typing.get_type_hints(EncodeOptions)  # each field's type as an object (`int | None`), not a string


def _check_bool(name: str, value, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (bool, np.bool_)):
        raise Decoder2VecError(f"{name} must be True or False{' or None' if optional else ''}, got {value!r}")


def flag_fields(names: Sequence[str] = ()) -> list[dataclasses.Field]:
    """The fields that are command-line flags (all of them, or those `names`, in field order)."""
    wanted = set(names) or {f.name for f in dataclasses.fields(EncodeOptions) if f.metadata["flag"]}
    missing = wanted - set(NAMES)
    if missing:
        raise choices_error("encode option", sorted(missing)[0], NAMES)
    return [f for f in dataclasses.fields(EncodeOptions) if f.name in wanted]


def takes_encode_options(function):
    """Let `inspect.signature(function)` (help(), the CLI-name test, evaluation's adapter) show the
    fields of EncodeOptions as the keywords that `function`'s `**keywords` accepts: the function
    spells them out nowhere and hands them to `EncodeOptions.of`."""
    signature = inspect.signature(function)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in params}
    params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
               for f in dataclasses.fields(EncodeOptions) if f.name not in taken]
    function.__signature__ = signature.replace(parameters=params)
    return function
