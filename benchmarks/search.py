"""Search at scale: recall@10 of the index against exact search, queries per second, index build
time and disk size for float32, int8 and binary vectors; and nDCG@10 through the index on the
default suite's retrieval tasks against the evaluation's exact nDCG@10.

    .venv/bin/python benchmarks/search.py                              # every real paragraph here (~130k)
    .venv/bin/python benchmarks/search.py --texts 3000 --queries 100 --parts ann --exact-below 1000   # quick look
    .venv/bin/python benchmarks/search.py --parts ndcg                 # the retrieval tasks only

ANN part: --texts real paragraphs (English Wikipedia sample, English/German/Danish LibreOffice help,
German/Danish man pages; each distinct paragraph once, 4..400 SmolLM2 tokens, seeded order), the
first --queries of them held out as queries. Embedded by SmolLM2-135M cut to --layers of its 30
layers (default 0: its token embeddings and final norm, mean-pooled, a static embedding model;
the full model runs ~700 tokens/s on this 2-core CPU, ~10 hours for the corpus), normalised, then
`decoder2vec encode`'s path (encode_corpus) per precision and `build_index` (index_type auto: an
ANN index from --exact-below rows). Truth: the exact float32 cosine top 10 (numpy). recall@10 =
share of that top 10 the index returns; QPS = queries / seconds of `Index.search_vector` one
query at a time (the query vectors encoded beforehand); build = build_index's seconds (loading
the shards and indexing); disk = the index folder's bytes.

nDCG part: the packaged SmolLM2-135M (all layers). Each retrieval task of the default suite is
scored by `evaluate` (exact cosine over all documents) and through an index of its documents
(encode_corpus with the task's document instruction, build_index with its query instruction,
`Index.search` per query), exact and with a forced IVF-HNSW-SQ index; the ranked ids are scored
by the evaluation's own formula (metrics.ranking_scores).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import scratch_dir  # noqa: E402

from decoder2vec import Encoder  # noqa: E402
from decoder2vec.backends.torch import backbone  # noqa: E402
from decoder2vec.corpus import encode_corpus, read_output  # noqa: E402
from decoder2vec.data.libreoffice import help_documents  # noqa: E402
from decoder2vec.data.manpages import manpages  # noqa: E402
from decoder2vec.data.sources import wikipedia_en_articles  # noqa: E402
from decoder2vec.errors import Decoder2VecError  # noqa: E402
from decoder2vec.evaluation import evaluate, load_tasks  # noqa: E402
from decoder2vec.evaluation.metrics import ranking_scores  # noqa: E402
from decoder2vec.search import Index, build_index  # noqa: E402
from decoder2vec.search import build as build_module  # noqa: E402


# ---------------------------------------------------------------- texts
def paragraphs(n: int, *, min_tokens: int = 4, max_tokens: int = 400) -> list[str]:
    """Up to n distinct real paragraphs of min_tokens..max_tokens SmolLM2 tokens, seeded order."""
    pool = [p.strip() for article in wikipedia_en_articles() for p in article.split("\n")]
    for lang in ("en", "de", "da"):
        pool += [p.strip() for doc in help_documents(lang) for p in doc.split("\n")]
    for lang in ("de", "da"):
        pool += [" ".join(row["text"].split()) for row in manpages(lang)]
    pool = [p for p in dict.fromkeys(pool) if p]
    tokenizer = Encoder.from_pretrained(device="cpu").tokenizer
    lengths = [len(ids) for ids in tokenizer(pool)["input_ids"]]
    pool = [p for p, k in zip(pool, lengths) if min_tokens <= k <= max_tokens]
    random.Random(0).shuffle(pool)
    return pool[:n]


def cut_encoder(layers: int, max_length: int) -> Encoder:
    """The packaged SmolLM2-135M with its first `layers` decoder layers."""
    encoder = Encoder.from_pretrained(device="cpu", max_length=max_length)
    net = backbone(encoder.model)
    if layers < len(net.layers):
        net.layers = torch.nn.ModuleList(list(net.layers)[:layers])
        encoder.model.config.num_hidden_layers = layers
        encoder.path = None  # no longer the folder's model: fingerprinted by its weights
    return encoder


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------- ANN part
def recall_at_10(found: list[list], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def run_queries(index: Index, queries: np.ndarray, **options) -> tuple[list[list], float]:
    index.search_vector(queries[0], k=10, **options)  # warm: the first query opens the index files
    started = time.perf_counter()
    found = [[hit.id for hit in index.search_vector(q, k=10, **options)] for q in queries]
    return found, len(queries) / (time.perf_counter() - started)


def ann(args, work: Path) -> None:
    texts = paragraphs(args.texts + args.queries)
    if len(texts) < args.texts + args.queries:
        print(f"(only {len(texts)} distinct real paragraphs of 4..400 tokens here; using all of them)\n")
    queries, corpus = texts[:args.queries], texts[args.queries:]
    source = work / "corpus.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(corpus)))
    encoder = cut_encoder(args.layers, args.max_length)
    build_module.EXACT_BELOW = args.exact_below
    print(f"## ANN: {len(corpus):,} real paragraphs, {len(queries)} held-out queries, SmolLM2-135M with "
          f"{args.layers} of 30 layers, max_length {args.max_length}, normalised, k=10, CPU\n")
    started = time.perf_counter()
    query_vectors = encoder.encode(queries, normalize_embeddings=True, batch_size=64)
    rows = []
    truth = None
    for precision in ("float32", "int8", "binary"):
        if precision != "float32" and precision not in args.precisions:
            continue  # float32 is always encoded: it gives the truth
        shards = work / f"shards-{precision}"
        t0 = time.perf_counter()
        encode_corpus(encoder, str(source), shards, id_column="id", normalize_embeddings=True,
                      precision=precision, batch_size=64)
        encode_s = time.perf_counter() - t0
        if truth is None:  # exact float32 cosine over every document: the right answer
            table = read_output(shards)
            ids = np.array(table["id"].to_pylist())
            vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
            truth = ids[np.argsort(-(query_vectors @ vectors.T), axis=1, kind="stable")[:, :10]]
        kinds = ["exact", "auto"] + (["ivf_pq"] if precision == "float32" else [])
        if precision not in args.precisions:
            kinds = []
        for kind in kinds:
            db = work / f"db-{precision}-{kind}"
            t0 = time.perf_counter()
            try:
                record = build_index(shards, db, index_type=kind)
            except Decoder2VecError as exc:  # a row saying so, and the other rows still measured
                rows.append((precision, f"{kind}: failed ({exc})", "-", float("nan"), float("nan"),
                             time.perf_counter() - t0, 0.0, 0.0, encode_s))
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
                shutil.rmtree(db, ignore_errors=True)
                continue
            build_s = time.perf_counter() - t0
            index = Index(db)
            settings = [{}] + ([{"nprobes": args.nprobes}] if record["index"] else []) + \
                ([{"rescore_multiplier": args.rescore_wide}] if precision == "binary" else [])
            for options in settings:
                found, qps = run_queries(index, query_vectors, **options)
                name = record["index"]["type"] if record["index"] else "exact (flat scan)"
                rescored = "" if precision == "float32" else f" + rescore x{options.get('rescore_multiplier', 4)}"
                rows.append((precision, name + rescored, options.get("nprobes", "default"),
                             recall_at_10(found, truth), qps, build_s, record.get("index_seconds", 0.0),
                             disk_bytes(db) / 2**20, encode_s))
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
            shutil.rmtree(db)
        shutil.rmtree(shards)
    print("| vectors | search | nprobes | recall@10 | QPS | build s (index s) | disk MiB | encode s |")
    print("|---|---|---|---|---|---|---|---|")
    for p, name, nprobes, recall, qps, build_s, index_s, mib, encode_s in rows:
        print(f"| {p} | {name} | {nprobes} | {recall:.3f} | {qps:,.0f} | {build_s:.1f} ({index_s:.1f}) | "
              f"{mib:,.1f} | {encode_s:.0f} |")
    print(f"\n({time.perf_counter() - started:.0f} s; load average after: {load_avg()})\n")


# ---------------------------------------------------------------- nDCG part
def ndcg(args, work: Path) -> None:
    encoder = Encoder.from_pretrained(device="cpu")
    tasks = [t for t in load_tasks("default") if t.type == "retrieval" and (not args.tasks or t.name in args.tasks)]
    print("## nDCG@10 through the index: default suite's retrieval tasks, packaged SmolLM2-135M, CPU\n")
    print("| task | queries | documents | evaluation (exact) | index, exact | index, IVF-HNSW-SQ |")
    print("|---|---|---|---|---|---|")
    for task in tasks:
        exact = evaluate(encoder, tasks=[task.name], verbose=False)["tasks"][task.name]["main_score"]
        queries, documents, relevant = task.data
        inputs = task.inputs(encoder.tokenizer)
        source = work / f"{task.name}.jsonl"
        source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(documents)))
        shards = work / f"{task.name}-shards"
        encode_corpus(encoder, str(source), shards, id_column="id", instruction=inputs["corpus"].instruction,
                      normalize_embeddings=True)
        scores = []
        for kind in ("exact", "ivf_hnsw_sq"):
            db = work / f"{task.name}-{kind}"
            build_index(shards, db, query_instruction=inputs["queries"].instruction, index_type=kind)
            hits = Index(db).search(encoder, list(queries), k=10)
            scores.append(ranking_scores([[h.id for h in row] for row in hits], relevant, 10)["ndcg_at_10"])
        print(f"| {task.name} | {len(queries)} | {len(documents)} | {exact:.4f} | {scores[0]:.4f} | {scores[1]:.4f} |")
    print(f"\n(load average after: {load_avg()})\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=200_000, help="documents to index (all there are, if fewer)")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--layers", type=int, default=0, help="SmolLM2 layers kept for the ANN part (30 = all)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--nprobes", type=int, default=64, help="the second nprobes setting of each ANN index")
    parser.add_argument("--rescore-wide", type=int, default=16, help="binary: a second, larger rescore multiplier")
    parser.add_argument("--exact-below", type=int, default=build_module.EXACT_BELOW,
                        help="rows from which index_type auto builds an ANN index")
    parser.add_argument("--precisions", nargs="+", choices=("float32", "int8", "binary"),
                        default=["float32", "int8", "binary"], help="ANN part: the vectors to index")
    parser.add_argument("--tasks", nargs="+", default=None, help="nDCG part: these retrieval tasks only")
    parser.add_argument("--parts", nargs="+", choices=("ann", "ndcg"), default=["ann", "ndcg"])
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    print(f"CPU: {cpu}; {os.cpu_count()} cores; torch threads {torch.get_num_threads()}; "
          f"load average before: {load_avg()}\n")
    work = scratch_dir()
    try:
        if "ann" in args.parts:
            ann(args, work)
        if "ndcg" in args.parts:
            ndcg(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
