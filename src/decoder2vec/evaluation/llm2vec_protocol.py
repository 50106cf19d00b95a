"""The LLM2Vec paper's MTEB protocol, so an mteb run of a decoder2vec model compares with its table.

Two parts, both as in the reference (McGill-NLP/llm2vec):

- per-task instructions: `test_configs/mteb/task_to_instructions.json`, shipped here as
  llm2vec_task_instructions.json; other tasks get mteb's instruction with the reference's
  ending (`llm2vec_instruction`: a trailing "." becomes ":"). Queries only; documents get none.
- the chat format of the instruct models it wraps at encode time (`LLM2Vec.prepare_for_tokenization`):
  the whole "instruction text" string is stripped and put inside the model's user turn. The
  reference keys it by the exact hub id, and so do we (`EncoderConfig.base_model`).

The reference separates instruction and text with "!@#$%^&*()" and pools the text part, the
closing marker included; decoder2vec passes the same two parts as instruction and text, so the
model reads the same string and pools the same side of it.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

INSTRUCTIONS_FILE = "llm2vec_task_instructions.json"

# hub id -> (before, after) the stripped "instruction text" string; `prepare_for_tokenization`.
CHAT_FORMATS = {
    "meta-llama/Meta-Llama-3-8B-Instruct": ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    "mistralai/Mistral-7B-Instruct-v0.2": ("[INST] ", " [/INST]"),
    "meta-llama/Llama-2-7b-chat-hf": ("[INST] ", " [/INST]"),
}


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


def chat_format(base_model: str | None) -> tuple[str, str] | None:
    return CHAT_FORMATS.get(str(base_model)) if base_model else None


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
