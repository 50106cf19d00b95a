"""Encoding speed: decoder2vec (fp32, int8) against llm2vec 0.2.3 and sentence-transformers.

    .venv/bin/python benchmarks/encode_speed.py                 # 1,000 Wikipedia paragraphs, 3 rounds
    .venv/bin/python benchmarks/encode_speed.py --texts 100 --rounds 1 --no-stsb   # quick look

Same weights (the packaged SmolLM2-135M, fp32), same texts, bidirectional attention, mean
pooling, batch_size 32, on the CPU. Every engine runs in its own process (so peak RSS is its
own), once per round; the engines take turns within a round and the order rotates between
rounds, so a machine that gets busier or quieter during the run affects all of them alike.
tokens/s is the median over rounds of (text tokens, no padding) / (seconds in encode()), after
a short warm-up; model loading is not timed. "% peak" is model FLOPs (2 x non-embedding
parameters x tokens) over the fp32 matmul throughput this script measures on this machine
(int8 can pass 100%: its matmuls are not fp32). Cosines are per text, reported as the minimum.
STS-B: Spearman of cosine vs gold score on /work/shared/data/stsb/stsb-en-dev.csv (or wherever
decoder2vec.data.sources finds it), fp32 vs int8.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from common import (
    cosines, count_tokens, matmul_peak_gflops, non_embedding_params, peak_rss_mib, reference_command,
    run_worker, scratch_dir, wiki_texts,
)

ENGINES = ("llm2vec", "sentence-transformers", "decoder2vec", "decoder2vec-compiled", "decoder2vec-int8",
           "decoder2vec-int8-compiled")
BATCH_SIZE = 32


# ---------------------------------------------------------------- workers (one process each)
def load_engine(engine: str):
    """-> (encode function texts -> vectors, tokens of texts)."""
    import torch

    from decoder2vec import Encoder, make_bidirectional
    from decoder2vec.loading import resolve_model

    if engine == "sentence-transformers":
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

        body = Transformer(resolve_model(None), max_seq_length=512, model_kwargs={"dtype": torch.float32})
        # sentence-transformers 6 renders plain texts through the tokenizer's chat template when it
        # has one (SmolLM2-Instruct does): ~20 extra tokens per text and different vectors. The
        # other engines encode the bare text, so this one must too.
        body.modality_config.pop("message", None)
        make_bidirectional(body.auto_model)
        model = SentenceTransformer(modules=[body, Pooling(body.get_embedding_dimension(), "mean")], device="cpu")
        return lambda texts: model.encode(texts, batch_size=BATCH_SIZE, show_progress_bar=False)
    encoder = Encoder.from_pretrained(pooling="mean", bidirectional=True, max_length=512, device="cpu",
                                      quantize="int8" if "int8" in engine else None,
                                      compile=engine.endswith("-compiled"))
    return lambda texts: encoder.encode(texts, batch_size=BATCH_SIZE)


def worker(engine: str, texts_file: str, output: str, warmup: int = 8) -> None:
    import torch

    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    encode = load_engine(engine)
    started = time.perf_counter()
    encode(texts[:warmup])
    if engine.endswith("-compiled"):
        # torch.compile specialises on the first shape and goes dynamic on the second: warm both
        # (the one-time compile is reported, not counted in tokens/s).
        encode(texts[warmup:2 * warmup + 3])
    warmup_seconds = time.perf_counter() - started
    start = time.perf_counter()
    vectors = encode(texts)
    seconds = time.perf_counter() - start
    np.save(output, np.asarray(vectors, dtype=np.float32))
    tokens = count_tokens(texts)
    print(json.dumps({
        "engine": engine, "texts": len(texts), "tokens": tokens, "seconds": seconds,
        "tokens_per_s": tokens / seconds, "warmup_seconds": warmup_seconds, "threads": torch.get_num_threads(), "peak_rss_mib": peak_rss_mib(),
    }))


# ---------------------------------------------------------------- STS-B (fp32 vs int8)
def stsb_spearman(limit: int | None = None, model: str | None = None) -> dict[str, float]:
    from scipy.stats import spearmanr

    from decoder2vec import Encoder
    from decoder2vec.data.sources import stsb
    from decoder2vec.quantization import quantize_model

    pairs = stsb("en", "dev")[:limit]
    left, right, gold = [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs]
    encoder = Encoder.from_pretrained(model, pooling="mean", bidirectional=True)
    scores = {}
    for name in ("decoder2vec", "decoder2vec-int8"):
        if name == "decoder2vec-int8":
            quantize_model(encoder, "int8")
        vectors = encoder.encode(left + right, batch_size=BATCH_SIZE)
        cos = cosines(vectors[: len(left)], vectors[len(left):])
        scores[name] = 100 * spearmanr(cos, gold).statistic
    return scores


# ---------------------------------------------------------------- the run
def worker_main() -> None:
    """The command line of one engine's process (the same one as benchmarks/reference/worker.py)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True, choices=ENGINES[1:])
    parser.add_argument("--texts", required=True, help="JSON list of strings")
    parser.add_argument("--output", required=True, help=".npy file for the vectors")
    args = parser.parse_args()
    worker(args.worker, args.texts, args.output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1000, help="how many Wikipedia paragraphs")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every engine, alternated")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--no-stsb", dest="stsb", action="store_false", help="skip the STS-B int8 check")
    parser.add_argument("--stsb-pairs", dest="stsb_pairs", type=int, help="first N STS-B dev pairs (default all)")
    parser.add_argument("--stsb-model", dest="stsb_model", default=None,
                        help="model for the STS-B int8 check (default: the packaged SmolLM2, untrained, which "
                             "scores near 0 on STS-B; a trained encoder such as runs/demo/supervised says more)")
    args = parser.parse_args()
    if "llm2vec" not in args.engines:
        raise SystemExit("the reference engine llm2vec is needed: ratios and cosines are measured against it")

    import torch

    from decoder2vec import Encoder

    texts = wiki_texts(args.texts)
    tokens = count_tokens(texts)
    workdir = scratch_dir()
    peak = matmul_peak_gflops()
    flops_per_token = 2 * non_embedding_params(Encoder.from_pretrained().model)
    load_before = os.getloadavg()[0]
    print(f"{len(texts)} Wikipedia paragraphs, {tokens} tokens; torch threads {torch.get_num_threads()}; "
          f"fp32 matmul peak {peak:.0f} GFLOP/s; load average {load_before:.1f}", flush=True)

    commands = {name: [sys.executable, __file__, "--worker", name] for name in args.engines if name != "llm2vec"}
    commands["llm2vec"] = reference_command()
    runs: dict[str, list[dict]] = {name: [] for name in args.engines}
    vectors: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        order = args.engines[r % len(args.engines):] + args.engines[: r % len(args.engines)]
        for name in order:
            report, vecs = run_worker(commands[name], texts, workdir, f"{name}-{r}")
            runs[name].append(report)
            vectors.setdefault(name, vecs)
            print(f"  round {r + 1} {name:22s} {report['tokens_per_s']:7.0f} tokens/s  "
                  f"{report['peak_rss_mib']:6.0f} MiB", flush=True)
    peak = max(peak, matmul_peak_gflops())
    load_after = os.getloadavg()[0]

    reference_speed = statistics.median(run["tokens_per_s"] for run in runs["llm2vec"])
    print(f"\nload average before {load_before:.1f}, after {load_after:.1f}; fp32 matmul peak {peak:.0f} GFLOP/s")
    header = (f"{'engine':26s} {'tokens/s':>9s} {'x ref':>6s} {'peak RSS MiB':>13s} {'% peak':>7s} "
              f"{'min cos vs ref':>15s} {'warm-up s':>10s}")
    print(header + "\n" + "-" * len(header))
    for name in args.engines:
        speed = statistics.median(run["tokens_per_s"] for run in runs[name])
        rss = max(run["peak_rss_mib"] for run in runs[name])
        mfu = 100 * speed * flops_per_token / (peak * 1e9)
        cos = cosines(vectors[name], vectors["llm2vec"]).min()
        warm = max(run.get("warmup_seconds", 0.0) for run in runs[name])
        print(f"{name:26s} {speed:9.0f} {speed / reference_speed:6.2f} {rss:13.0f} {mfu:7.1f} {cos:15.6f} {warm:10.1f}")
    print()
    for name in ("decoder2vec-compiled", "decoder2vec-int8", "decoder2vec-int8-compiled"):
        if "decoder2vec" in vectors and name in vectors:
            cos = cosines(vectors[name], vectors["decoder2vec"])
            print(f"{name} vs decoder2vec fp32 cosine: min {cos.min():.4f}  mean {cos.mean():.4f}")
    if args.stsb:
        scores = stsb_spearman(args.stsb_pairs, args.stsb_model)
        drop = scores["decoder2vec"] - scores["decoder2vec-int8"]
        print(f"STS-B en dev ({args.stsb_pairs or 'all'} pairs, {args.stsb_model or 'packaged SmolLM2'}) Spearman x100: fp32 {scores['decoder2vec']:.2f}  int8 {scores['decoder2vec-int8']:.2f}  "
              f"(drop {drop:.2f})")


if __name__ == "__main__":
    worker_main() if "--worker" in sys.argv else main()
