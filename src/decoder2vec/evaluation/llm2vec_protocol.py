"""The LLM2Vec paper's MTEB protocol, so an mteb run of a decoder2vec model compares with its table.

Two parts, both as in the reference (McGill-NLP/llm2vec):

- per-task instructions: `test_configs/mteb/task_to_instructions.json` of llm2vec 0.2.3 (67
  tasks), shipped here as llm2vec_task_instructions.json (tests/test_paper_data.py compares it
  with the vendored reference file); other tasks get mteb's instruction with the reference's
  ending (`llm2vec_instruction`: a trailing "." becomes ":"). Queries only; documents get none.
- the chat format (`LLM2Vec.prepare_for_tokenization`): the whole "instruction text" string is
  stripped and put inside the model's user turn, but only when the model's name is exactly an
  instruct hub id. llm2vec's MTEB scripts load the `...-mntp` repositories as the base model, so
  the published scores were computed unwrapped (llm2vec issue #103), and MtebEncoder encodes
  unwrapped unless `wrap_in_chat_format=True`; then the format is the folder's
  (`EncoderConfig.chat_format`, which Encoder.tokenize applies itself) or the one the reference
  keys to the hub id in `EncoderConfig.base_model`. The formats live in decoder2vec.model.chat_format.

The reference separates instruction and text with "!@#$%^&*()" and pools the text part, the
closing marker included; decoder2vec passes the same two parts as instruction and text, so the
model reads the same string and pools the same side of it.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from ..model.chat_format import FORMATS, HUB_FORMATS, format_for

INSTRUCTIONS_FILE = "llm2vec_task_instructions.json"

# hub id -> (before, after) the stripped "instruction text" string; `prepare_for_tokenization`.
CHAT_FORMATS = {hub: FORMATS[name] for hub, name in HUB_FORMATS.items()}


@functools.lru_cache(maxsize=1)
def task_instructions() -> dict[str, str]:
    """MTEB task name -> the instruction LLM2Vec evaluated it with."""
    text = (resources.files("decoder2vec.evaluation") / INSTRUCTIONS_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def llm2vec_instruction(instruction: str) -> str:
    """The reference's ending for instructions outside its table: "Do this." -> "Do this:"."""
    if instruction and instruction[-1] != ":":
        instruction = instruction.strip(".") + ":"
    return instruction


def chat_format(model) -> tuple[str, str] | None:
    """(before, after) to wrap with at encode time: by the hub id (a base_model string, or an
    EncoderConfig's base_model). None for an EncoderConfig that names its own chat_format: the
    Encoder wraps then, and wrapping here as well would wrap twice."""
    if model is None or isinstance(model, str):
        name = format_for(model)
    else:
        name = None if getattr(model, "chat_format", None) else format_for(getattr(model, "base_model", None))
    return FORMATS[name] if name else None


def chat_format_name(config) -> str | None:
    """The chat format an Encoder with this config should read under the LLM2Vec protocol: its
    own, else the one LLM2Vec applies to its base model's hub id (for `encoder_settings`)."""
    return getattr(config, "chat_format", None) or format_for(getattr(config, "base_model", None))


def wrap(texts: list[str], instruction: str | None, fmt: tuple[str, str]) -> tuple[list[str], str, str]:
    """(texts, instruction, instruction_template) for Encoder.encode, so that the model reads
    `before + instruction + " " + text.rstrip() + after` (or `before + text.rstrip() + after`
    without an instruction) and pools `text.rstrip() + after`, as the reference does (it strips
    the whole string, in which the separator still stands before the text: so only the text's end).

    The Encoder strips an instruction and formats it with the template, so the part of `before`
    that is trailing whitespace (Llama-3's "\\n\\n") goes into the template.
    """
    before, after = fmt
    texts = [t.rstrip() + after for t in texts]
    if instruction and instruction.strip():
        return texts, before + instruction.strip(), "{instruction} "
    head = before.rstrip()
    return texts, head, "{instruction}" + before[len(head):]
