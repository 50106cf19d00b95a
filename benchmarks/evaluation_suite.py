"""Wall time and scores of an evaluation suite for one model, without the vector cache.

    .venv/bin/python benchmarks/evaluation_suite.py                          # SmolLM2-135M, default suite
    .venv/bin/python benchmarks/evaluation_suite.py minilm --suite quick
    .venv/bin/python benchmarks/evaluation_suite.py smollm2-135m --threads 1 --output r.json

Prints per task: texts and tokens encoded (the model's own tokenizer; for sentence-transformers
models its word pieces), seconds, main score; then the totals, tokens/s and the load average
before and after, because a busy machine slows encoding (on a 2-core machine with other jobs
running, torch with 2 threads was ~10x slower than with 1 in our measurements: --threads).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="smollm2-135m")
    parser.add_argument("--suite", default="default")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--output", default=None, help="also write the results JSON")
    args = parser.parse_args()

    import torch

    from decoder2vec.evaluation import CachingAdapter, compare, load_encoder, model_label, run_task
    from decoder2vec.evaluation.runner import averages
    from decoder2vec.evaluation.suites import load_tasks
    from decoder2vec.results import write_results

    if args.threads:
        torch.set_num_threads(args.threads)
    encoder = load_encoder(args.model)
    tokenizer = getattr(encoder, "tokenizer", None)
    adapter = CachingAdapter(encoder, cache=False, name=model_label(encoder))
    counted = {"texts": 0, "tokens": 0}
    original = adapter.embed

    def counting_embed(texts, instruction=None, **kwargs):
        counted["texts"] += len(texts)
        if tokenizer is not None:
            counted["tokens"] += sum(len(ids) for ids in tokenizer(list(texts))["input_ids"])
        return original(texts, instruction, **kwargs)

    adapter.embed = counting_embed
    load_before = os.getloadavg()[0]
    print(f"model {model_label(encoder)}, suite {args.suite}, torch threads {torch.get_num_threads()}, "
          f"load average {load_before:.1f} on {os.cpu_count()} cores")
    print(f"{'task':<22}{'texts':>7}{'tokens':>9}{'seconds':>9}{'tokens/s':>10}  main score")
    results, total_seconds = {}, 0.0
    for task in load_tasks(args.suite):
        before = dict(counted)
        start = time.perf_counter()
        scores = run_task(task, adapter)
        seconds = time.perf_counter() - start
        total_seconds += seconds
        texts, tokens = counted["texts"] - before["texts"], counted["tokens"] - before["tokens"]
        results[task.name] = {"type": task.type, "language": task.language, "metric": task.main_score,
                              "main_score": scores[task.main_score], "scores": scores, "sizes": task.sizes(),
                              "seconds": round(seconds, 2), "tokens": tokens}
        rate = f"{tokens / seconds:10.0f}" if tokens else f"{'-':>10}"
        print(f"{task.name:<22}{texts:>7}{tokens:>9}{seconds:>9.1f}{rate}  {scores[task.main_score]:.4f}", flush=True)
    tokens = counted["tokens"]
    print(f"{'total':<22}{counted['texts']:>7}{tokens:>9}{total_seconds:>9.1f}"
          + (f"{tokens / total_seconds:10.0f}" if tokens else ""))
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    out = {"model": model_label(encoder), "suite": args.suite, "tasks": results, "averages": averages(results),
           "seconds": round(total_seconds, 2)}
    print(compare([out]))
    if args.output:
        write_results(out, args.output)


if __name__ == "__main__":
    main()
