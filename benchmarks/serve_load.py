"""Soak test of `decoder2vec serve`: well-behaved and hostile clients for a fixed time, loopback only.

Starts the server in this process (a thread, 127.0.0.1, a free port), runs `--clients` asyncio
clients that each post one request after another for `--seconds`, and `--hostile` clients that
alternate a request with a lone surrogate (must get 422) and a large request they hang up on
mid-way (the server must drop it, 499). Then it stops by itself and prints requests/s, inputs/s,
latency percentiles of the well-behaved requests, their errors by status (must be 0), what the
hostile clients got, and the server's own /metrics counts (model calls, texts encoded).

    .venv/bin/python benchmarks/serve_load.py                       # real default model (SmolLM2-135M)
    .venv/bin/python benchmarks/serve_load.py --clients 16 --seconds 300 --inputs 4 --hostile 2
    .venv/bin/python benchmarks/serve_load.py --clients 2 --seconds 5   # a quick check that it runs
    .venv/bin/python benchmarks/serve_load.py --backend onnx          # or openvino (exported once, cached)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import torch
from prometheus_client.parser import text_string_to_metric_families

from decoder2vec import Encoder
from decoder2vec.backends import BACKENDS
from decoder2vec.serving import BackgroundServer, ServeSettings

WORDS = ("the cat sat on a mat while a dog barked at the mailman near an old red house by the river "
         "in the quiet town where people walk every morning to buy bread and read the news").split()


def make_text(rng: random.Random, min_words: int, max_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))).capitalize() + "."


async def client(url: str, args, seed: int, stop_at: float, latencies: list, errors: Counter) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=args.request_timeout + 30) as http:
        while time.monotonic() < stop_at:
            body = {"model": "bench", "input": [make_text(rng, args.min_words, args.max_words)
                                                for _ in range(args.inputs)]}
            start = time.perf_counter()
            try:
                response = await http.post("/v1/embeddings", json=body)
                ok = response.status_code == 200 and len(response.json()["data"]) == args.inputs
                status = response.status_code
            except httpx.HTTPError as exc:
                ok, status = False, type(exc).__name__
            latencies.append(time.perf_counter() - start)
            if not ok:
                errors[str(status)] += 1


async def hostile(url: str, args, seed: int, stop_at: float, got: Counter) -> None:
    """Alternates a lone surrogate (a JSON escape) with a large request it hangs up on."""
    rng = random.Random(-seed - 1)
    host, port = url.removeprefix("http://").split(":")
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        while time.monotonic() < stop_at:
            response = await http.post("/v1/embeddings", content=b'{"input": ["fine", "bad \\ud800"]}')
            got[f"surrogate -> {response.status_code}"] += 1
            body = json.dumps({"input": [make_text(rng, args.min_words, args.max_words)
                                         for _ in range(args.hang_up_inputs)]}).encode()
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            await asyncio.sleep(rng.uniform(0, 0.5))
            writer.close()
            got["hung up"] += 1


async def load(url: str, args) -> tuple[list, Counter, Counter, float]:
    latencies, errors, hostile_got = [], Counter(), Counter()
    start = time.monotonic()
    stop_at = start + args.seconds
    await asyncio.gather(*(client(url, args, i, stop_at, latencies, errors) for i in range(args.clients)),
                         *(hostile(url, args, i, stop_at, hostile_got) for i in range(args.hostile)))
    return latencies, errors, hostile_got, time.monotonic() - start


def direct_baseline(encoder, args) -> float:
    """Inputs/s of Encoder.encode without HTTP, on batches the size of a full round of clients, run
    in a worker thread like the server's model calls."""
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


def server_counts(url: str) -> dict:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="default: the packaged SmolLM2-135M")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--hostile", type=int, default=1, help="hostile clients (surrogates, hang-ups); 0 for none")
    p.add_argument("--hang-up-inputs", dest="hang_up_inputs", type=int, default=256,
                   help="texts in each request a hostile client hangs up on")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--inputs", type=int, default=1, help="texts per well-behaved request")
    p.add_argument("--min-words", dest="min_words", type=int, default=5)
    p.add_argument("--max-words", dest="max_words", type=int, default=30)
    p.add_argument("--max-wait-ms", dest="max_wait_ms", type=float, default=ServeSettings.max_wait_ms)
    p.add_argument("--max-batch-tokens", dest="max_batch_tokens", type=int, default=None,
                   help="default: the server's (8192 on a GPU, 1024 on a CPU)")
    p.add_argument("--request-timeout", dest="request_timeout", type=float, default=ServeSettings.request_timeout)
    args = p.parse_args()

    encoder = Encoder.from_pretrained(args.model, backend=args.backend)
    encoder.encode(["warm up"] * 4)
    direct = direct_baseline(encoder, args)
    settings = ServeSettings(model_name="bench", max_wait_ms=args.max_wait_ms, max_batch_tokens=args.max_batch_tokens,
                             max_queue=max(256, 2 * (args.clients + args.hostile)),
                             request_timeout=args.request_timeout)
    server = BackgroundServer(encoder, settings)
    url = server.start()
    try:
        latencies, errors, hostile_got, elapsed = asyncio.run(load(url, args))
        time.sleep(1)  # let the server notice the last hang-ups before counting them
        counts = server_counts(url)
        batch_tokens = httpx.get(f"{url}/health", timeout=30).json()["max_batch_tokens"]
    finally:
        server.stop()
    ms = np.array(latencies) * 1000

    def answered(status: int) -> int:
        return int(counts.get(("decoder2vec_requests_total", (("path", "/v1/embeddings"), ("status", str(status)))), 0))

    backend = f"torch, {torch.get_num_threads()} threads" if args.backend == "torch" else args.backend
    print(f"model {encoder.config.base_model} on {encoder.device} ({backend}); "
          f"{args.clients} clients + {args.hostile} hostile x {args.seconds:g} s, {args.inputs} input(s) of "
          f"{args.min_words}-{args.max_words} words per request, max_wait_ms={args.max_wait_ms:g}, "
          f"max_batch_tokens={batch_tokens}")
    print(f"requests      {len(latencies)}  ({len(latencies) / elapsed:.1f} requests/s, "
          f"{len(latencies) * args.inputs / elapsed:.1f} inputs/s)")
    print(f"direct encode {direct:.1f} inputs/s (Encoder.encode in a thread, batches of "
          f"{args.clients * args.inputs}, no HTTP)")
    print(f"latency ms    p50 {np.percentile(ms, 50):.1f}  p90 {np.percentile(ms, 90):.1f}  "
          f"p99 {np.percentile(ms, 99):.1f}  max {ms.max():.1f}")
    calls = int(counts[("decoder2vec_batch_texts_count", ())])
    encoded = int(counts[("decoder2vec_batch_texts_sum", ())])
    print(f"model calls   {calls} encoding {encoded} texts ({answered(200) / max(calls, 1):.1f} answered "
          f"requests per call)")
    if args.hostile:
        print(f"hostile       {dict(sorted(hostile_got.items()))}; server: {answered(499)} dropped as "
              f"disconnected (499), {answered(422)} answered 422")
    # Other work on the machine shares the cores: say how busy it was.
    print(f"load average  {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores")
    print(f"errors        {sum(errors.values())}" + (f"  {dict(errors)}" if errors else ""))
    bad_hostile = {k: v for k, v in hostile_got.items() if k.startswith("surrogate") and k != "surrogate -> 422"}
    if errors or bad_hostile:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
