"""What every reference worker shares (they run in the reference venv, llm2vec 0.2.3 + transformers
4.44, as scripts beside this file): the request/response files, and run_mntp.py's block grouping."""

from __future__ import annotations

import argparse
import json
from itertools import chain

MAP_BATCH = 1000  # datasets.Dataset.map(batched=True)'s default batch_size


def read_request(doc: str) -> tuple[argparse.Namespace, dict]:
    """--model, --inputs (a JSON request) and --output: the arguments and the parsed request."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    with open(args.inputs, encoding="utf-8") as f:
        return args, json.load(f)


def write_response(path: str, out: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f)


def grouped_features(tokenizer, texts: list[str], block: int) -> list[dict]:
    """run_mntp.py's tokenize_function + group_texts: every key cut into the same full blocks."""
    features = []
    for start in range(0, len(texts), MAP_BATCH):
        examples = tokenizer(texts[start:start + MAP_BATCH], return_special_tokens_mask=True)
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total = (len(concatenated["input_ids"]) // block) * block
        features += [{k: t[i:i + block] for k, t in concatenated.items()} for i in range(0, total, block)]
    return features
