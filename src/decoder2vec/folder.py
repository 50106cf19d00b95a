"""The Encoder folder format: the one place that reads and writes `decoder2vec_config.json`.

An Encoder folder is a transformers model folder (config.json, safetensors, tokenizer) plus
`decoder2vec_config.json`, which says how to turn hidden states into vectors (pooling,
instruction template, bidirectional, max length) and what training made it (`stages`). A folder
whose config lists stages is a finished training stage: `last_stage` reads the last one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .chat_format import check_chat_format
from .errors import Decoder2VecError

CONFIG_NAME = "decoder2vec_config.json"


@dataclass
class EncoderConfig:
    """What a saved Encoder folder says about itself."""

    pooling: str = "mean"
    bidirectional: bool = True
    max_length: int = 512
    # The text placed before the input when an instruction is given; the instruction's
    # tokens are attended to but never pooled.
    instruction_template: str = "{instruction} "
    # Which tokens are pooled: "offsets" = exactly the text's (by character offsets);
    # "llm2vec" = the last n tokens, n = the text's token count when tokenized alone, as LLM2Vec
    # does (where a tokenizer merges across the instruction/text boundary, it pools a token of
    # the instruction, e.g. SmolLM2's ";" before " Someone").
    pool_span: str = "offsets"
    # An LLM2Vec chat format (chat_format.FORMATS) the instruction and text are wrapped in, or None.
    chat_format: str | None = None
    base_model: str | None = None
    dimension: int | None = None
    # Training history, one entry per stage: {"stage": "mntp", "recipe": ..., ...}.
    stages: list = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "the config") -> "EncoderConfig":
        """Keys this version does not know are ignored (a newer decoder2vec may add some); known
        keys of the wrong type are an error naming the key, the value and `source`."""
        if not isinstance(data, dict):
            raise Decoder2VecError(f"{source}: expected a JSON object, got {type(data).__name__}")
        for key, types in _TYPES.items():
            value = data.get(key)
            if key in data and not (isinstance(value, types) and not (isinstance(value, bool) and bool not in types)):
                names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise Decoder2VecError(f"{source}: {key!r} must be {names}, got {value!r}")
        if "instruction_template" in data and "{instruction}" not in data["instruction_template"]:
            raise Decoder2VecError(f"{source}: 'instruction_template' must contain '{{instruction}}', "
                                   f"got {data['instruction_template']!r}")
        if "pool_span" in data and data["pool_span"] not in POOL_SPANS:
            raise Decoder2VecError(f"{source}: 'pool_span' must be one of {', '.join(POOL_SPANS)}, "
                                   f"got {data['pool_span']!r}")
        check_chat_format(data.get("chat_format"), f"{source}: chat_format")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


POOL_SPANS = ("offsets", "llm2vec")
_TYPES = {
    "pooling": (str,), "bidirectional": (bool,), "max_length": (int,), "instruction_template": (str,),
    "pool_span": (str,), "chat_format": (str, type(None)),
    "base_model": (str, type(None)), "dimension": (int, type(None)), "stages": (list,),
}


def read_config(folder) -> EncoderConfig | None:
    """The folder's EncoderConfig; None when `folder` is not an Encoder folder. A config file that
    is unreadable, not JSON or wrongly typed is a one-line error naming the file."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise Decoder2VecError(f"{path}: not a readable JSON file ({type(exc).__name__}: {exc})") from exc
    return EncoderConfig.from_dict(data, source=str(path))


def write_config(folder, config: EncoderConfig) -> None:
    (Path(folder) / CONFIG_NAME).write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")


def last_stage(folder) -> dict | None:
    """The last training-stage record of an Encoder folder (a finished stage), else None."""
    config = read_config(folder) if Path(folder).is_dir() else None
    return config.stages[-1] if config and config.stages else None


def apply_recipe_keys(config: EncoderConfig, *, pool_span: str | None, chat_format: str | None) -> None:
    """A training recipe's pool_span / chat_format onto the Encoder config a stage saves: null keeps
    the input folder's, chat_format "none" turns wrapping off."""
    if pool_span is not None:
        config.pool_span = pool_span
    if chat_format is not None:
        config.chat_format = None if chat_format == "none" else chat_format
