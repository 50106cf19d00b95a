"""Long inputs: the needle-in-a-haystack retrieval probe at 1k/4k/8k tokens, with time and peak memory.

    .venv/bin/python benchmarks/needle.py --model gemma3-270m
    .venv/bin/python benchmarks/needle.py --model smollm2-135m --lengths 1000 4000 8000 --n-documents 6
    .venv/bin/python benchmarks/needle.py --model gemma3-270m --causal --pooling last_token

Prints one line per length (accuracy@1, MRR, seconds, peak resident memory of the process so far;
lengths run in increasing order, so the peak after a length is that length's peak), then the
per-position scores, then one JSON line with everything (for docs/languages.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def peak_rss_gib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--pooling", default="mean")
    p.add_argument("--causal", action="store_true")
    p.add_argument("--lengths", type=int, nargs="+", default=[1000, 4000, 8000])
    p.add_argument("--n-documents", dest="n_documents", type=int, default=6)
    p.add_argument("--positions", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    p.add_argument("--language", default="en")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    from decoder2vec import Encoder
    from decoder2vec.evaluation import model_label, run_task
    from decoder2vec.evaluation.needle import NeedleTask

    torch.manual_seed(0)
    encoder = Encoder.from_pretrained(args.model, pooling=args.pooling, bidirectional=not args.causal)
    label = model_label(encoder)
    print(f"# needle probe: {label}, {args.n_documents} documents per length, positions {args.positions}, "
          f"torch threads {torch.get_num_threads()}, model loaded at {peak_rss_gib():.2f} GiB peak RSS", flush=True)
    rows = {}
    for length in sorted(args.lengths):
        task = NeedleTask(lengths=(length,), n_documents=args.n_documents, positions=args.positions,
                          language=args.language, seed=args.seed,
                          source="wikipedia" if args.language == "en" else "manpages")
        start = time.perf_counter()
        result = run_task(task, encoder, cache=False)  # timed: always encode
        seconds = time.perf_counter() - start
        scores = result["lengths"][str(length)]
        rows[length] = {**scores, "seconds": round(seconds, 1), "peak_rss_gib": round(peak_rss_gib(), 2),
                        "positions": result["positions"]}
        print(f"{length:>6} tokens  acc@1 {scores['accuracy@1']:.2f}  MRR {scores['mrr']:.3f}  "
              f"{seconds:7.1f} s  peak RSS {peak_rss_gib():.2f} GiB", flush=True)
    print(json.dumps({"model": label, "chance_mrr": result["chance_mrr"], "lengths": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
