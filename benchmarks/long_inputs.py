"""Peak memory (RSS) of encoding one long text, per model and length, on CPU.

    .venv/bin/python benchmarks/long_inputs.py                       # gemma3-270m 8k+32k, smollm2-135m 8k
    .venv/bin/python benchmarks/long_inputs.py --model smollm2-135m --tokens 2048 8192

For each length it prints the RSS after loading and a short warm-up encode (so the weights are
paged in), the peak RSS while encoding (the kernel's high-water mark is reset before each encode),
the difference, and the time taken. `--no-chunking` turns off the Encoder's chunked attention to
show what plain SDPA costs (a (length x length) mask for Gemma-3's sliding-window layers).
A bounded-memory encoder grows roughly linearly with the length (activations), not with its
square (a materialised length x length mask or attention matrix).
"""

from __future__ import annotations

import argparse
import re
import time
import warnings
from pathlib import Path

SENTENCES = [
    "The committee met on Tuesday to review the budget for the coming year.",
    "Rainfall in the northern valleys was twice the ten-year average.",
    "A new bridge now links the old town with the harbour district.",
    "Researchers measured how quickly the enzyme broke down the sugar.",
    "The library extended its opening hours during the examination period.",
    "Most of the orchestra's instruments were tuned before the rehearsal began.",
    "Engineers replaced the worn bearings in the turbine last spring.",
    "Local farmers planted barley after the wheat harvest failed.",
]


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def _reset_peak() -> bool:
    # Writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0).
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def long_text(tokenizer, tokens: int) -> str:
    """A text of at least `tokens` tokens made of varied sentences."""
    parts, count, i = [], 0, 0
    while count < tokens:
        sentence = f"{SENTENCES[i % len(SENTENCES)]} (paragraph {i})"
        parts.append(sentence)
        count += len(tokenizer(sentence, add_special_tokens=False)["input_ids"]) + 1
        i += 1
    return " ".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None, help="repeatable (default: gemma3-270m, smollm2-135m)")
    parser.add_argument("--tokens", type=int, nargs="+", default=None, help="lengths (default: 8192 32768 for Gemma-3, 8192 for SmolLM2)")
    parser.add_argument("--no-chunking", dest="no_chunking", action="store_true", help="plain SDPA (for comparison)")
    args = parser.parse_args(argv)
    plans = [(m, args.tokens) for m in args.model] if args.model else [
        ("gemma3-270m", args.tokens or [8192, 32768]), ("smollm2-135m", args.tokens or [8192])]

    if len(plans) > 1:
        # One process per model: freed memory of one model stays in the allocator and would hide
        # the next model's peak.
        import subprocess
        import sys

        for model, lengths in plans:
            extra = ["--no-chunking"] if args.no_chunking else []
            subprocess.run([sys.executable, __file__, "--model", model, "--tokens", *map(str, lengths), *extra],
                           check=True)
        return

    import torch

    from decoder2vec import Encoder
    from decoder2vec.backends import torch as torch_backend

    if args.no_chunking:
        torch_backend.CHUNKED_ATTENTION_ABOVE = float("inf")

    attention = "plain SDPA" if args.no_chunking else "chunked above 2**24 batch*length^2"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, attention: {attention}")
    print(f"{'model':<14} {'tokens':>7} {'loaded MiB':>11} {'peak MiB':>9} {'encode +MiB':>12} {'seconds':>8}")
    for model, lengths in plans:
        encoder = Encoder.from_pretrained(model, max_length=max(lengths), device="cpu")
        encoder.encode(long_text(encoder.tokenizer, 256))  # pages the weights in
        for length in lengths:
            text = long_text(encoder.tokenizer, length)
            encoder.config.max_length = length  # cut to exactly `length` tokens
            loaded = _status_kib("VmRSS") / 1024
            exact = _reset_peak()
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the expected truncation warning
                vector = encoder.encode(text)
            seconds = time.perf_counter() - start
            peak = _status_kib("VmHWM") / 1024
            assert vector.shape == (encoder.dimension,)
            note = "" if exact else "  (peak includes loading: clear_refs unavailable)"
            print(f"{model:<14} {length:>7} {loaded:>11.0f} {peak:>9.0f} {peak - loaded:>12.0f} {seconds:>8.1f}{note}",
                  flush=True)
        del encoder


if __name__ == "__main__":
    main()
