"""The sentence-transformers files of an Encoder folder, written in one place, once.

`modules.json`, `sentence_bert_config.json`, `1_Pooling/config.json` and
`config_sentence_transformers.json` make an Encoder folder load with `SentenceTransformer(folder)`.
Only stock sentence-transformers modules are referenced (Transformer + Pooling): loading needs
neither decoder2vec nor `trust_remote_code`. Bidirectional attention travels in the backbone's
config.json (`is_causal: false`), which transformers >= 5.2 honours for every attention kernel;
the folder declares that requirement so an older transformers fails loudly instead of silently
running causal. `exact=True` references decoder2vec's own module (st_module.py) instead.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
import transformers

from ..model.bidirectional import quirks_for
from ..errors import Decoder2VecError
from .config import EncoderConfig

ST_TRANSFORMER = "sentence_transformers.base.modules.Transformer"
ST_POOLING = "sentence_transformers.sentence_transformer.modules.Pooling"
EXACT_MODULE = "decoder2vec.st_module.EncoderModule"
# The files this module owns in an Encoder folder (folder/files.py); the exact module writes the first two.
MODULES, ST_CONFIG, TRANSFORMER_CONFIG, POOLING_CONFIG = (
    "modules.json", "config_sentence_transformers.json", "sentence_bert_config.json", "1_Pooling/config.json")
FILES = (MODULES, ST_CONFIG, TRANSFORMER_CONFIG, POOLING_CONFIG)

# decoder2vec pooling -> (ST pooling_mode, include_prompt). decoder2vec never pools instruction
# tokens for the means; its first_token is the first real token (the instruction's, if any),
# which is ST's "cls" with the prompt included.
POOLING_TO_ST = {
    "mean": ("mean", False),
    "weighted_mean": ("weightedmean", False),
    "last_token": ("lasttoken", True),
    "first_token": ("cls", True),
}

# Instructions offered as sentence-transformers prompts (ST's `prompt_name=`) when none are given.
DEFAULT_INSTRUCTIONS = {
    "query": "Given a question, retrieve passages that answer the question:",
}


def check_exportable(pooling: str) -> None:
    if pooling not in POOLING_TO_ST:
        raise Decoder2VecError(
            f"pooling {pooling!r} has no sentence-transformers equivalent; "
            f"exportable poolings: {', '.join(POOLING_TO_ST)}"
        )


def st_prompts(config: EncoderConfig, instructions: dict[str, str] | None = None) -> dict[str, str]:
    """ST prompts are literal prefixes: each instruction formatted with the encoder's template."""
    instructions = DEFAULT_INSTRUCTIONS if instructions is None else instructions
    return {name: config.instruction_template.format(instruction=text.strip()) for name, text in instructions.items()}


def write_sentence_transformers_files(folder, config: EncoderConfig, net_config, *,
                                      instructions: dict[str, str] | None = None, exact: bool = False) -> None:
    """Write the ST files for an Encoder (its `config` and its backbone's transformers config)."""
    try:
        st_version = version("sentence-transformers")
    except PackageNotFoundError:  # writing the files does not need it; loading them does
        st_version = "6.0.0"
    folder = Path(folder)
    st_config = {
        "model_type": "SentenceTransformer",
        "__version__": {
            "sentence_transformers": st_version,
            "transformers": transformers.__version__,
            "pytorch": torch.__version__,
        },
        "requirements": {
            "transformers": {
                "specifier": ">=5.2",
                "reason": "older versions ignore is_causal=false and would run this bidirectional model causally",
            }
        },
        "prompts": st_prompts(config, instructions),
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    _write_json(folder / ST_CONFIG, st_config)
    if exact:
        _write_json(folder / MODULES, [{"idx": 0, "name": "0", "path": "", "type": EXACT_MODULE}])
        return
    check_exportable(config.pooling)
    causal = not config.bidirectional
    config_kwargs = {"is_causal": causal}
    if hasattr(net_config.get_text_config(), "use_bidirectional_attention"):
        config_kwargs["use_bidirectional_attention"] = not causal
    transformer_config = {
        "transformer_task": "feature-extraction",
        "max_seq_length": config.max_length,
        "do_lower_case": False,
        # Repeated here (config.json says it too) so a user's config edit cannot silently undo it.
        "config_kwargs": config_kwargs,
        # decoder2vec pads on the right and numbers positions from the first real token; ST passes no
        # position_ids, so left padding would shift them.
        "processor_kwargs": {"padding_side": "right"},
    }
    attn = quirks_for(net_config).get("attn_implementation")
    if attn:
        transformer_config["model_kwargs"] = {"attn_implementation": attn}
    mode, include_prompt = POOLING_TO_ST[config.pooling]
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": ST_TRANSFORMER},
        {"idx": 1, "name": "1", "path": Path(POOLING_CONFIG).parent.as_posix(), "type": ST_POOLING},
    ]
    pooling_config = {"embedding_dimension": config.dimension, "pooling_mode": mode, "include_prompt": include_prompt}
    _write_json(folder / MODULES, modules)
    _write_json(folder / TRANSFORMER_CONFIG, transformer_config)
    _write_json(folder / POOLING_CONFIG, pooling_config)


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
