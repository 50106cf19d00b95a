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
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_TYPES = {
    "pooling": (str,), "bidirectional": (bool,), "max_length": (int,), "instruction_template": (str,),
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
