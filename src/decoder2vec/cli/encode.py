"""decoder2vec encode --input PATH_OR_GLOB... --output DIR/ | FILE.npy | FILE.parquet

A thin layer over `decoder2vec.corpus.encode_corpus` (and `decoder2vec.corpus.ray_engine` for
--engine ray); flags carry the Python keywords' names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..backends import BACKENDS
from ..corpus import (check_inputs, check_output_path, check_resumable, corpus_options, corpus_settings,
                      encode_corpus, ids_file, manifest_path, model_fingerprint, recorded_options, resolve_inputs)
from ..encode_options import EncodeOptions
from ..encoder import Encoder
from ..errors import Decoder2VecError
from ..model.loading import DEFAULT_MODEL
from ..model.pooling import POOLINGS
from . import (FROM_PRETRAINED, Number, add_encode_options, add_keyword, add_max_length_argument, add_model_argument,
               add_speed_arguments, keywords_of)

ENGINES = ("local", "ray")
KEYWORDS_OF = (encode_corpus, Encoder.from_pretrained, EncodeOptions)
CLI_ONLY = {"engine": "local or ray", "address": "the Ray cluster", "num_workers": "Ray actors"}


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
    add_encode_options(p, help={"on_empty": "empty or null texts: stop naming the file and line (error), or skip "
                                            "them and list their ids (in _manifest.json, or FILE.ids.json beside "
                                            "a .npy)"})
    p.add_argument("--pooling", choices=POOLINGS, default=None)
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None,
                   help="attention direction (default: what the model folder says; bidirectional otherwise)")
    add_max_length_argument(p)
    add_keyword(p, encode_corpus, "shard_rows", minimum=1,
                help="rows per Parquet shard, also the rows held in memory at once")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="the engine that runs the model (docs/performance.md); onnx/openvino run on the CPU")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: fp32 on CPU, bf16 on GPU)")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: this process; ray: a Ray Data actor pool (pip install 'decoder2vec[ray]')")
    p.add_argument("--address", default=None, help="--engine ray: the cluster to join (e.g. ray://head:10001)")
    p.add_argument("--num-workers", dest="num_workers", type=Number(int, "--num-workers", 1), default=1,
                   help="--engine ray: Encoder actors (one model load each; one GPU each where GPUs exist)")
    add_speed_arguments(p)


def run(args):
    options = corpus_options(**keywords_of(args, EncodeOptions), show_progress_bar=True)
    # Inputs and output are checked before the (slow) model load, so a typo costs nothing.
    files = resolve_inputs(args.inputs)
    check_inputs(files, text_column=args.text_column, id_column=args.id_column, carry=args.carry)
    path, kind = check_output_path(args.output, args.overwrite)
    if args.engine == "ray" and kind != "shards":
        raise Decoder2VecError(f"--engine ray writes Parquet shards into a folder; got {args.output!r}")
    if args.engine == "local" and (args.address or args.num_workers != 1):
        raise Decoder2VecError("--address and --num-workers need --engine ray")
    load = keywords_of(args, FROM_PRETRAINED)
    model = args.model or DEFAULT_MODEL
    columns = dict(text_column=args.text_column, id_column=args.id_column, carry=args.carry, shard_rows=args.shard_rows)
    settings = {"model": str(Path(model).resolve()) if Path(model).exists() else model,
                "dtype": args.dtype, "quantize": args.quantize, "backend": args.backend,
                **({"fast": True} if args.fast else {})}  # absent when off: older manifests still resume
    if kind == "shards":
        # The model's files are hashed only to resume (a hub id not downloaded yet has none: compared after the load).
        fingerprint = model_fingerprint(model) if manifest_path(path).is_file() else None
        check_resumable(path, {**corpus_settings(None, files, **columns), **settings, **recorded_options(options),
                               **({"model_fingerprint": fingerprint} if fingerprint else {})})
    if args.engine == "ray":
        # Imported only here: Ray is an optional extra and takes seconds to import.
        from ..corpus.ray_engine import encode_files

        summary = encode_files(model, args.inputs, path, options, load=load, num_workers=args.num_workers,
                               address=args.address, settings=settings, **columns)
    else:
        encoder = Encoder.from_pretrained(model, **load)
        overwrite = {"overwrite": args.overwrite} if kind != "shards" else {}
        summary = encode_corpus(encoder, args.inputs, path, options, settings=settings, **columns, **overwrite)
    print(f"wrote {summary.rows} vectors of dimension {summary.dimension} ({summary.dtype}) to {args.output}")
    if summary.skipped_ids:
        shown = ", ".join(map(str, summary.skipped_ids[:10])) + (" ..." if len(summary.skipped_ids) > 10 else "")
        where = f"{manifest_path(path)}" if kind == "shards" else f"{ids_file(path)} (ids of the rows kept)"
        print(f"skipped {len(summary.skipped_ids)} empty rows (ids {shown}); see {where}")
    elif kind == "npy" and (args.id_column or args.on_empty == "skip"):
        print(f"row ids: {ids_file(path)}")
    print(summary.line())
