"""Encode texts with the reference llm2vec 0.2.3. Runs inside the reference venv (setup.sh).

    $(bash benchmarks/reference/setup.sh) benchmarks/reference/worker.py \
        --model FIXED_FOLDER --texts texts.json --output vectors.npy

Prints one JSON line: tokens, seconds, tokens_per_s, peak_rss_mib. The model folder must be a
copy that transformers 4.44 can read (prepare_model.py). llm2vec maps a LlamaConfig to its
LlamaBiModel (a copy of 4.44's LlamaModel with is_causal=False and the causal mask zeroed);
SmolLM2 is a Llama, so that is the class used here.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch
from llm2vec import LLM2Vec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--texts", required=True, help="JSON list of strings")
    parser.add_argument("--output", required=True, help=".npy file for the vectors")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=8, help="texts encoded once before timing")
    args = parser.parse_args()

    texts = json.loads(open(args.texts, encoding="utf-8").read())
    model = LLM2Vec.from_pretrained(
        args.model, enable_bidirectional=True, pooling_mode="mean", max_length=512,
        torch_dtype=torch.float32, attn_implementation="sdpa",
    )
    assert type(model.model).__name__ == "LlamaBiModel", type(model.model)
    # Tokens the model sees: llm2vec's tokenizer adds no special tokens for SmolLM2.
    tokens = sum(len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=512)["input_ids"])
    if args.warmup:
        model.encode(texts[: args.warmup], batch_size=args.batch_size, show_progress_bar=False)
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=args.batch_size, show_progress_bar=False, convert_to_numpy=True)
    seconds = time.perf_counter() - start
    np.save(args.output, np.asarray(vectors, dtype=np.float32))
    print(json.dumps({
        "engine": "llm2vec 0.2.3", "texts": len(texts), "tokens": tokens, "seconds": seconds,
        "tokens_per_s": tokens / seconds, "threads": torch.get_num_threads(),
        "peak_rss_mib": peak_rss_mib(),
    }))


def peak_rss_mib() -> float:
    """This process's peak RSS: /proc's VmHWM. Not ru_maxrss, which Linux carries across exec, so a
    worker started from a large parent would report at least the parent's size."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()

