"""Load test of `decoder2vec serve`: N concurrent clients for a fixed time, loopback only.

Starts the server in this process (a thread, 127.0.0.1, a free port), runs `--clients` asyncio
clients that each post one request after another for `--seconds`, then stops by itself and
prints requests/s, inputs/s, latency percentiles, errors and how many model calls served them
(fewer calls than requests = micro-batching at work).

    .venv/bin/python benchmarks/serve_load.py                       # real default model (SmolLM2-135M)
    .venv/bin/python benchmarks/serve_load.py --clients 16 --seconds 30 --inputs 4
    decoder2vec export --to onnx runs/smollm2-onnx && \
    .venv/bin/python benchmarks/serve_load.py --onnx --model runs/smollm2-onnx
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

import httpx
import numpy as np

from decoder2vec import Encoder
from decoder2vec.serving import BackgroundServer, ServeSettings

WORDS = ("the cat sat on a mat while a dog barked at the mailman near an old red house by the river "
         "in the quiet town where people walk every morning to buy bread and read the news").split()


def make_text(rng: random.Random, min_words: int, max_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))).capitalize() + "."


async def client(url: str, args, seed: int, stop_at: float, latencies: list, errors: list) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        while time.monotonic() < stop_at:
            body = {"model": "bench", "input": [make_text(rng, args.min_words, args.max_words)
                                                for _ in range(args.inputs)]}
            start = time.perf_counter()
            try:
                response = await http.post("/v1/embeddings", json=body)
                ok = response.status_code == 200 and len(response.json()["data"]) == args.inputs
            except httpx.HTTPError as exc:
                ok, response = False, exc
            latencies.append(time.perf_counter() - start)
            if not ok:
                errors.append(getattr(response, "status_code", repr(response)))


async def load(url: str, args) -> tuple[list, list, float]:
    latencies, errors = [], []
    start = time.monotonic()
    stop_at = start + args.seconds
    await asyncio.gather(*(client(url, args, i, stop_at, latencies, errors) for i in range(args.clients)))
    return latencies, errors, time.monotonic() - start


def direct_baseline(encoder, args) -> float:
    """Inputs/s of Encoder.encode without HTTP, on batches the size of a full round of clients, run
    in a worker thread like the server's model calls."""
    from concurrent.futures import ThreadPoolExecutor

    rng, size = random.Random(-1), args.clients * args.inputs

    def batch():
        return [make_text(rng, args.min_words, args.max_words) for _ in range(size)]

    with ThreadPoolExecutor(max_workers=1) as worker:
        for _ in range(2):  # the first calls of a process pay for kernel set-up
            worker.submit(encoder.encode, batch()).result()
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < 3 or calls < 3:
            worker.submit(encoder.encode, batch()).result()
            calls += 1
        return calls * size / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="default: the packaged SmolLM2-135M")
    p.add_argument("--onnx", action="store_true",
                   help="--model is a folder from `decoder2vec export --to onnx`: serve it with onnxruntime")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--inputs", type=int, default=1, help="texts per request")
    p.add_argument("--min-words", dest="min_words", type=int, default=5)
    p.add_argument("--max-words", dest="max_words", type=int, default=30)
    p.add_argument("--max-wait-ms", dest="max_wait_ms", type=float, default=ServeSettings.max_wait_ms)
    p.add_argument("--max-batch-tokens", dest="max_batch_tokens", type=int, default=ServeSettings.max_batch_tokens)
    args = p.parse_args()

    import torch

    if args.onnx:
        from decoder2vec.onnx_backend import OnnxEncoder

        encoder = OnnxEncoder.from_pretrained(args.model)
    else:
        encoder = Encoder.from_pretrained(args.model)
    encoder.encode(["warm up"] * 4)
    direct = direct_baseline(encoder, args)
    settings = ServeSettings(model_name="bench", max_wait_ms=args.max_wait_ms, max_batch_tokens=args.max_batch_tokens,
                             max_queue=max(256, 2 * args.clients))
    server = BackgroundServer(encoder, settings)
    url = server.start()
    try:
        latencies, errors, elapsed = asyncio.run(load(url, args))
        batcher = server.app.state.batcher
        batches, served = batcher.batches, batcher.requests
    finally:
        server.stop()
    ms = np.array(latencies) * 1000
    backend = "onnxruntime" if args.onnx else f"torch, {torch.get_num_threads()} threads"
    print(f"model {encoder.config.base_model} on {encoder.device} ({backend}); "
          f"{args.clients} clients x {args.seconds:g} s, {args.inputs} input(s) of {args.min_words}-{args.max_words} "
          f"words per request, max_wait_ms={args.max_wait_ms:g}")
    print(f"requests      {len(latencies)}  ({len(latencies) / elapsed:.1f} requests/s, "
          f"{len(latencies) * args.inputs / elapsed:.1f} inputs/s)")
    print(f"direct encode {direct:.1f} inputs/s (Encoder.encode in a thread, batches of "
          f"{args.clients * args.inputs}, no HTTP)")
    print(f"latency ms    p50 {np.percentile(ms, 50):.1f}  p90 {np.percentile(ms, 90):.1f}  "
          f"p99 {np.percentile(ms, 99):.1f}  max {ms.max():.1f}")
    print(f"model calls   {batches} for {served} requests ({served / max(batches, 1):.1f} requests per call)")
    # Other work on the machine shares the cores: say how busy it was.
    print(f"load average  {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores")
    print(f"errors        {len(errors)}" + (f"  {sorted(set(map(str, errors)))}" if errors else ""))
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
