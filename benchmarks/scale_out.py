"""Corpus encoding at scale: the local streaming engine against Ray Data with 1 and 2 actors, and the
local engine's peak memory at two corpus sizes (it should be flat: bounded by --shard-rows).

    .venv/bin/python benchmarks/scale_out.py                          # 20k real paragraphs; RSS at 10k vs 200k
    .venv/bin/python benchmarks/scale_out.py --parts memory           # only the memory table
    .venv/bin/python benchmarks/scale_out.py --texts 200 --rss-texts 500 2000 --max-length 64   # quick look

Throughput: --texts real English paragraphs (real_texts: the Wikipedia sample's paragraphs, then
English LibreOffice help paragraphs, since the Wikipedia sample has only about 8,000), the packaged
SmolLM2-135M (or --model), batch_size 32, fp32 on the CPU, written as Parquet shards. Every engine
runs in its own process; "seconds" is the wall time of the encode call, which for Ray includes
starting the actors and loading one model per actor.
Peak RSS is per process: the local process; for Ray the driver and the largest Encoder actor
(sampled every 0.2 s with psutil, so a short peak can be missed).

Memory flatness: the local engine on --rss-texts texts (the real paragraphs repeated to the size),
into shards and, for contrast, into one .npy (all vectors held until the end). It uses a tiny
random model (tests/tiny.py) by default so 200k texts take minutes: the pipeline's memory (read,
encode, write) is what is measured; a real model adds its own constant footprint.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import psutil  # noqa: E402
from common import scratch_dir  # noqa: E402
from decoder2vec.data.libreoffice import help_documents  # noqa: E402
from decoder2vec.data.sources import wikipedia_en_articles  # noqa: E402
from decoder2vec.model.loading import load_tokenizer  # noqa: E402
from tiny import tiny_encoder  # noqa: E402

from decoder2vec import Encoder  # noqa: E402
from decoder2vec.corpus import encode_corpus  # noqa: E402


def peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across
    exec, so a worker started from this (large) script would report at least the script's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- workers (one process each)
def worker(job: dict) -> dict:
    options = dict(batch_size=job["batch_size"], shard_rows=job["shard_rows"])
    load = {"device": "cpu", "max_length": job["max_length"]}
    if job["engine"] == "local":
        encoder = Encoder.from_pretrained(job["model"], **load)
        started = time.perf_counter()
        summary = encode_corpus(encoder, job["input"], job["output"], **options)
        seconds = time.perf_counter() - started
        return dict(seconds=seconds, rows=summary.rows, tokens=summary.tokens, rss_mib=peak_rss_mib())
    # Imported only in Ray workers: Ray's import alone adds tens of MiB that would count in the
    # local engine's peak RSS.
    import ray

    from decoder2vec.corpus.ray_engine import encode_files

    ray.init(num_cpus=job["ray_cpus"], include_dashboard=False, log_to_driver=False)
    actors: dict[int, float] = {}
    done = threading.Event()

    def sample():
        while not done.is_set():
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                if "EncodeBatches" in " ".join(proc.info["cmdline"] or []) and proc.info["memory_info"]:
                    actors[proc.pid] = max(actors.get(proc.pid, 0), proc.info["memory_info"].rss / 2**20)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    summary = encode_files(job["model"], job["input"], job["output"], load=load, num_workers=job["workers"], **options)
    seconds = time.perf_counter() - started
    done.set()
    ray.shutdown()
    return dict(seconds=seconds, rows=summary.rows, tokens=summary.tokens, rss_mib=peak_rss_mib(),
                actor_rss_mib=max(actors.values(), default=0.0), actors_seen=len(actors))


def run(job: dict) -> dict:
    """One job in a fresh process, so its peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                         env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"worker failed ({job['engine']}):\n{out.stderr[-3000:]}")


# ---------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--rss-texts", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rss-model", default=None, help="default: a tiny random model (tests/tiny.py)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-rows", type=int, default=2_000)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--rss-outputs", nargs="+", choices=["shards", "npy"], default=["shards", "npy"],
                        help="npy holds every vector until the end: the contrast that shows the measure can grow")
    parser.add_argument("--parts", nargs="+", choices=["throughput", "memory"], default=["throughput", "memory"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return

    work = scratch_dir() / "scale_out"
    work.mkdir(parents=True, exist_ok=True)
    texts = real_texts(args.texts)
    source = work / f"wiki-{args.texts}.txt"
    source.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n")
    common = dict(model=args.model, batch_size=args.batch_size, shard_rows=args.shard_rows,
                  max_length=args.max_length, input=str(source), ray_cpus=args.ray_cpus)

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    if "throughput" in args.parts:
        throughput(args, common, work)
    if "memory" in args.parts:
        memory(args, common, work, texts)


def real_texts(n: int, *, min_tokens: int = 4, max_tokens: int = 400) -> list[str]:
    """n real English paragraphs of min_tokens..max_tokens SmolLM2 tokens: the Wikipedia sample's
    (seeded order, as common.wiki_texts) first, then LibreOffice help's, each paragraph once."""
    tokenizer = load_tokenizer(None)

    def fitting(paragraphs: list[str]) -> list[str]:
        lengths = [len(ids) for ids in tokenizer(paragraphs)["input_ids"]]
        return [p for p, k in zip(paragraphs, lengths) if min_tokens <= k <= max_tokens]

    wiki = fitting([p.strip() for article in wikipedia_en_articles() for p in article.split("\n") if p.strip()])
    random.Random(0).shuffle(wiki)
    if n <= len(wiki):
        return wiki[:n]
    seen = set(wiki)
    help_paragraphs = [p for p in dict.fromkeys(p.strip() for doc in help_documents("en") for p in doc.split("\n"))
                       if p and p not in seen]
    texts = wiki + fitting(help_paragraphs)[:n - len(wiki)]
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} real paragraphs of {min_tokens}..{max_tokens} tokens; asked for {n}")
    return texts


def throughput(args, common: dict, work: Path) -> None:
    print(f"## throughput: {args.texts} real paragraphs, {args.model}, batch {args.batch_size}, "
          f"shards of {args.shard_rows}, CPU\n")
    print("| engine | seconds | rows/s | tokens/s | peak RSS (MiB) | actor peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    jobs = [("local", dict(engine="local"))] + [(f"ray, {n} actor{'s' * (n > 1)}", dict(engine="ray", workers=n))
                                                for n in args.workers]
    for name, extra in jobs:
        out = work / f"out-{extra['engine']}-{extra.get('workers', 0)}"
        _remove_output(out)
        r = run({**common, **extra, "output": str(out)})
        actor = f"{r['actor_rss_mib']:.0f} ({r['actors_seen']} seen)" if "actor_rss_mib" in r else "-"
        print(f"| {name} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:.1f} | {r['tokens'] / r['seconds']:,.0f} | "
              f"{r['rss_mib']:.0f} | {actor} |", flush=True)


def memory(args, common: dict, work: Path, texts: list[str]) -> None:
    rss_model = args.rss_model or _tiny_model(work)
    print(f"\n## local streaming memory: {rss_model if args.rss_model else 'tiny random model'}, shards of "
          f"{args.shard_rows}\n")
    print("| texts | output | seconds | peak RSS (MiB) |")
    print("|---|---|---|---|")
    for n in args.rss_texts:
        big = work / f"wiki-x{n}.txt"
        lines = [t.replace("\n", " ") for t in texts]
        with open(big, "w") as f:
            for i in range(n):
                f.write(lines[i % len(lines)] + "\n")
        for kind in args.rss_outputs:
            out = work / (f"rss-{n}" if kind == "shards" else f"rss-{n}.npy")
            _remove_output(out)
            r = run({**common, "engine": "local", "model": rss_model, "input": str(big), "output": str(out)})
            print(f"| {n} | {kind} | {r['seconds']:.1f} | {r['rss_mib']:.0f} |", flush=True)


def _remove_output(out: Path) -> None:
    """Earlier outputs of this script only (its own scratch folder)."""
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()


def _tiny_model(work: Path) -> str:
    folder = work / "tiny-model"
    if not folder.exists():
        tiny_encoder("qwen2").save_pretrained(folder)
    return str(folder)


if __name__ == "__main__":
    main()
