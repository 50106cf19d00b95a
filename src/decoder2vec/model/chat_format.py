"""The chat formats LLM2Vec wraps instruct models' inputs in (`LLM2Vec.prepare_for_tokenization`,
llm2vec 0.2.3), by name, so an Encoder folder can say which one its model reads.

LLM2Vec puts the whole "instruction; text" string, stripped, inside the model's user turn, at
encode time and in supervised training (run_supervised.py's collator; run_simcse.py does not
wrap). It chooses the format by the exact hub id of the model; decoder2vec names the format in the
folder (`EncoderConfig.chat_format`), so a fine-tuned copy or a local path keeps it.
"""

from __future__ import annotations

from ..errors import Decoder2VecError

# name -> (before, after) the stripped "instruction text" string. "gemma" writes <bos> itself
# as LLM2Vec does, so Gemma reads two BOS tokens (the tokenizer adds one too): kept, to read what
# LLM2Vec's models read.
FORMATS = {
    "llama-2": ("[INST] ", " [/INST]"),
    "mistral": ("[INST] ", " [/INST]"),
    "llama-3": ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    "gemma": ("<bos><start_of_turn>user\n", "<end_of_turn>"),
    "qwen": ("<|im_start|>user\n", "<|im_end|>"),
}
# The hub ids LLM2Vec 0.2.3 wraps, and the format it uses for each.
HUB_FORMATS = {
    "meta-llama/Meta-Llama-3-8B-Instruct": "llama-3",
    "mistralai/Mistral-7B-Instruct-v0.2": "mistral",
    "meta-llama/Llama-2-7b-chat-hf": "llama-2",
    "google/gemma-2-9b-it": "gemma",
    "Qwen/Qwen2-1.5B-Instruct": "qwen",
    "Qwen/Qwen2-7B-Instruct": "qwen",
}


def check_chat_format(name: str | None, source: str = "chat_format") -> None:
    if name is not None and name not in FORMATS:
        raise Decoder2VecError(f"{source}: unknown chat format {name!r}; choices: {', '.join(FORMATS)} or null")


def format_for(base_model: str | None) -> str | None:
    """The format LLM2Vec would apply to this hub id (None: it applies none)."""
    return HUB_FORMATS.get(str(base_model)) if base_model else None


def wrap(prefix: str, text: str, name: str) -> tuple[str, str]:
    """(head, tail) of LLM2Vec's `before + (prefix + SEP + text).strip() + after`, split where its
    separator stood: the model reads head + tail, and tail is the side LLM2Vec pools.

    The separator (non-blank) stands between prefix and text while LLM2Vec strips, so only the
    prefix's start and the text's end are stripped; a text without instruction keeps its leading
    spaces."""
    before, after = FORMATS[name]
    return before + prefix.lstrip(), text.rstrip() + after
