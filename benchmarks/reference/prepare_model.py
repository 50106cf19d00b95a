"""Make a copy of a transformers-5 saved Llama folder that transformers 4.44 (llm2vec 0.2.3) loads.

    python benchmarks/reference/prepare_model.py SOURCE_DIR TARGET_DIR

Standard library only, so it runs in either venv. The weights are linked, not copied. What 4.44
cannot read in a transformers-5 folder:
- config.json keeps RoPE settings in `rope_parameters`; 4.44 wants `rope_theta` (+ `rope_scaling`
  for non-default types) at the top level, else it silently uses theta=10000 (wrong vectors).
- config.json says `dtype`; 4.44 reads `torch_dtype`.
- tokenizer_config.json names the class `TokenizersBackend` (5.x only); 4.44's equivalent for a
  plain tokenizer.json is `PreTrainedTokenizerFast`, which by default also returns
  `token_type_ids`, which LlamaModel.forward rejects: `model_input_names` says which to return.
- tokenizer.json stores BPE merges as pairs `["a", "b"]` (tokenizers >= 0.20); the tokenizers
  0.19 that 4.44 needs reads only `"a b"` strings. Same merges, same order: same ids.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

DROP_TOKENIZER_KEYS = ("backend", "is_local", "local_files_only")


def fix_config(config: dict) -> dict:
    config = dict(config)
    rope = config.pop("rope_parameters", None) or {}
    if "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
    if rope.get("rope_type", "default") != "default":
        config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    if "dtype" in config:
        config["torch_dtype"] = config.pop("dtype")
    return config


def fix_tokenizer_config(config: dict) -> dict:
    config = {k: v for k, v in config.items() if k not in DROP_TOKENIZER_KEYS}
    if config.get("tokenizer_class") in (None, "TokenizersBackend"):
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.setdefault("model_input_names", ["input_ids", "attention_mask"])
    return config


def fix_tokenizer_json(tokenizer: dict) -> dict:
    model = tokenizer.get("model", {})
    merges = model.get("merges")
    if merges and isinstance(merges[0], list):
        if any(" " in part for pair in merges for part in pair):
            raise ValueError("a BPE merge contains a space; it cannot be written in the old format")
        tokenizer = {**tokenizer, "model": {**model, "merges": [" ".join(pair) for pair in merges]}}
    return tokenizer


def prepare(source: Path, target: Path) -> Path:
    if (target / "config.json").exists():
        return target
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for item in source.iterdir():
        if item.name == "config.json":
            (tmp / item.name).write_text(json.dumps(fix_config(json.loads(item.read_text())), indent=2))
        elif item.name == "tokenizer_config.json":
            fixed = fix_tokenizer_config(json.loads(item.read_text()))
            (tmp / item.name).write_text(json.dumps(fixed, indent=2))
        elif item.name == "tokenizer.json":
            fixed = fix_tokenizer_json(json.loads(item.read_text(encoding="utf-8")))
            (tmp / item.name).write_text(json.dumps(fixed, ensure_ascii=False), encoding="utf-8")
        elif item.suffix == ".safetensors":
            os.symlink(item.resolve(), tmp / item.name)
        elif item.is_file():
            shutil.copy2(item, tmp / item.name)
    os.replace(tmp, target)  # atomic: a half-written copy never looks finished
    return target


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(prepare(Path(sys.argv[1]), Path(sys.argv[2])))
