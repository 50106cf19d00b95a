"""decoder2vec encode --input PATH_OR_GLOB... --output DIR/ | FILE.npy | FILE.parquet

A thin layer over `decoder2vec.corpus.encode_corpus` (and `decoder2vec.corpus.ray_engine` for
--engine ray); flags carry the Python keywords' names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..backends import BACKENDS
from ..corpus import (ON_EMPTY, check_inputs, check_output_path, check_resumable, corpus_settings, encode_corpus,
                      ids_file, manifest_path, model_fingerprint, resolve_inputs)
from ..encoder import Encoder
from ..errors import Decoder2VecError
from ..model.loading import DEFAULT_MODEL
from ..model.pooling import POOLINGS
from ..model.precision import PRECISIONS
from . import add_model_argument, add_speed_arguments

ENGINES = ("local", "ray")
KEYWORDS_OF = (encode_corpus, Encoder.from_pretrained, Encoder.encode)
CLI_ONLY = {"engine": "local or ray", "address": "the Ray cluster", "num_workers": "Ray actors"}
# Flags read as text and checked in run(), so a bad value is one line naming the flag (argparse's
# own type=int error prints the usage block first).
INT_FLAGS = {"batch_size": 1, "max_length": 1, "truncate_dim": 1, "shard_rows": 1, "num_workers": 1}


def add_arguments(p):
    add_model_argument(p)
    p.add_argument("--inputs", "--input", dest="inputs", required=True, nargs="+",
                   help=".txt (one text per line), .jsonl, .csv or .parquet files, or globs (quote them)")
    p.add_argument("--output", required=True,
                   help="a folder (Parquet shards + _manifest.json, resumable), or one .npy / .parquet file")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing .npy/.parquet output that decoder2vec wrote (never another file)")
    p.add_argument("--text-column", dest="text_column", default="text", help="column/field holding the text")
    p.add_argument("--id-column", dest="id_column", default=None,
                   help="column/field holding each row's id (default: the row number over all inputs, from 0)")
    p.add_argument("--carry", nargs="+", default=[], metavar="COLUMN",
                   help="input columns copied into the Parquet output beside id and embedding")
    p.add_argument("--on-empty", dest="on_empty", choices=ON_EMPTY, default="error",
                   help="empty or null texts: stop naming the file and line (error), or skip them and list "
                        "their ids (in _manifest.json, or FILE.ids.json beside a .npy)")
    p.add_argument("--instruction", default=None, help="instruction placed before every text (not pooled)")
    p.add_argument("--pooling", choices=POOLINGS, default=None)
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None,
                   help="attention direction (default: what the model folder says; bidirectional otherwise)")
    p.add_argument("--batch-size", dest="batch_size", default="32")
    p.add_argument("--max-length", dest="max_length", default=None)
    p.add_argument("--normalize-embeddings", dest="normalize_embeddings", action="store_true",
                   help="L2-normalise vectors")
    p.add_argument("--truncate-dim", dest="truncate_dim", default=None)
    p.add_argument("--precision", choices=PRECISIONS, default="float32")
    p.add_argument("--shard-rows", dest="shard_rows", default="10000",
                   help="rows per Parquet shard, also the rows held in memory at once")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="the engine that runs the model (docs/performance.md); onnx/openvino run on the CPU")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: fp32 on CPU, bf16 on GPU)")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: this process; ray: a Ray Data actor pool (pip install 'decoder2vec[ray]')")
    p.add_argument("--address", default=None, help="--engine ray: the cluster to join (e.g. ray://head:10001)")
    p.add_argument("--num-workers", dest="num_workers", default="1",
                   help="--engine ray: Encoder actors (one model load each; one GPU each where GPUs exist)")
    add_speed_arguments(p)


def check_ints(args) -> None:
    for name, least in INT_FLAGS.items():
        value = getattr(args, name, None)
        if value is None or isinstance(value, int):
            continue
        flag = "--" + name.replace("_", "-")
        try:
            number = int(value)
        except ValueError:
            raise Decoder2VecError(f"{flag} must be an integer, got {value!r}") from None
        if number < least:
            raise Decoder2VecError(f"{flag} must be >= {least}, got {number}")
        setattr(args, name, number)


def run(args):
    check_ints(args)
    # Inputs and output are checked before the (slow) model load, so a typo costs nothing.
    files = resolve_inputs(args.inputs)
    check_inputs(files, text_column=args.text_column, id_column=args.id_column, carry=args.carry)
    path, kind = check_output_path(args.output, args.overwrite)
    if args.engine == "ray" and kind != "shards":
        raise Decoder2VecError(f"--engine ray writes Parquet shards into a folder; got {args.output!r}")
    if args.engine == "local" and (args.address or args.num_workers != 1):
        raise Decoder2VecError("--address and --num-workers need --engine ray")
    load = dict(pooling=args.pooling, bidirectional=args.bidirectional, max_length=args.max_length,
                device=args.device, dtype=args.dtype, quantize=args.quantize, compile=args.compile,
                backend=args.backend, fast=args.fast)
    model = args.model or DEFAULT_MODEL
    options = dict(text_column=args.text_column, id_column=args.id_column, carry=args.carry,
                   instruction=args.instruction, batch_size=args.batch_size,
                   normalize_embeddings=args.normalize_embeddings, truncate_dim=args.truncate_dim,
                   precision=args.precision, on_empty=args.on_empty, shard_rows=args.shard_rows)
    if kind != "shards":
        options["overwrite"] = args.overwrite
    settings = {"model": str(Path(model).resolve()) if Path(model).exists() else model,
                "dtype": args.dtype, "quantize": args.quantize, "backend": args.backend,
                **({"fast": True} if args.fast else {})}  # absent when off: older manifests still resume
    if kind == "shards":
        known = {k: v for k, v in options.items() if k not in ("on_empty", "batch_size")}
        # The model's files are hashed only to resume (a hub id not downloaded yet has none: compared after the load).
        fingerprint = model_fingerprint(model) if manifest_path(path).is_file() else None
        check_resumable(path, {**corpus_settings(None, files, **known), **settings,
                               **({"model_fingerprint": fingerprint} if fingerprint else {})})
    if args.engine == "ray":
        # Imported only here: Ray is an optional extra and takes seconds to import.
        from ..corpus.ray_engine import encode_files

        summary = encode_files(model, args.inputs, path, load=load, num_workers=args.num_workers,
                               address=args.address, settings=settings, show_progress_bar=True, **options)
    else:
        encoder = Encoder.from_pretrained(model, **load)
        summary = encode_corpus(encoder, args.inputs, path, settings=settings, show_progress_bar=True, **options)
    print(f"wrote {summary.rows} vectors of dimension {summary.dimension} ({summary.dtype}) to {args.output}")
    if summary.skipped_ids:
        shown = ", ".join(map(str, summary.skipped_ids[:10])) + (" ..." if len(summary.skipped_ids) > 10 else "")
        where = f"{manifest_path(path)}" if kind == "shards" else f"{ids_file(path)} (ids of the rows kept)"
        print(f"skipped {len(summary.skipped_ids)} empty rows (ids {shown}); see {where}")
    elif kind == "npy" and (args.id_column or args.on_empty == "skip"):
        print(f"row ids: {ids_file(path)}")
    print(summary.line())
