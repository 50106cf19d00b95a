"""Encoding speed: every decoder2vec backend (torch eager/compiled, onnx, openvino; fp32 and int8
weights) against llm2vec 0.2.3 and sentence-transformers (torch, onnx, openvino backends).

    .venv/bin/python benchmarks/encode_speed.py --json perf.json   # 1,000 Wikipedia paragraphs, 3 rounds
    .venv/bin/python benchmarks/encode_speed.py --texts 20 --rounds 1 --no-stsb   # proves it runs

--json OUT writes {"cpu": cpu.py's CPU line, "engines": {NAME: {"tokens_per_s", "x_llm2vec", "peak_rss_mib",
"min_cos_llm2vec", "min_cos_fp32", "weights", "ours", "stsb_dev", "load_s", "warmup_s"}}}; min_cos_fp32:
against decoder2vec's own fp32 vectors (the accuracy gate of issue 27: >= 0.999). stsb_dev: STS-B dev Spearman x100 of
--stsb-model (a trained encoder, e.g. runs/demo/supervised) through that engine (ours only; null
with --no-stsb). sentence-transformers' onnx/openvino backends need optimum-onnx / optimum-intel:
where they are not installed (they pin other transformers versions, so they are not in .venv) the
engine is reported as skipped with the reason; --st-python runs those engines with another
interpreter that has them. Note that optimum exports the checkpoint as it is (causal attention),
so its vectors are not the bidirectional ones (min_cos_llm2vec shows by how much).
load_s: model load (+ export on the first use of an exported backend: later loads read the
cached artifact); warmup_s: the first encode calls (torch.compile's compile, OpenVINO/ORT first
shapes), neither counted in tokens/s.

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
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import (
    cosines, count_tokens, matmul_peak_gflops, non_embedding_params, peak_rss_mib, reference_command,
    run_worker, scratch_dir, st_backends_model_dir, st_backends_python, wiki_texts,
)

ENGINES = ("llm2vec", "sentence-transformers", "sentence-transformers-onnx", "sentence-transformers-openvino",
           "decoder2vec", "decoder2vec-compiled", "decoder2vec-int8", "decoder2vec-int8-compiled",
           "decoder2vec-onnx", "decoder2vec-onnx-int8", "decoder2vec-openvino", "decoder2vec-openvino-int8",
           # issue 27: matmuls through oneDNN (bf16 where AMX), bf16 weights, OpenVINO's bf16 precision,
           # and what --fast picks on this CPU (cpu.FAST_ENGINES).
           "decoder2vec-onednn", "decoder2vec-bf16", "decoder2vec-openvino-bf16", "decoder2vec-fast",
           # only the Linear matmuls in bf16, the rest fp32 (quantize="bf16", model/bf16_linear.py);
           # OpenVINO int8 weights with per-token int8 activations (quantize="int8-activations")
           "decoder2vec-bf16-linears", "decoder2vec-openvino-int8-activations")
ST_EXPORTED = ("sentence-transformers-onnx", "sentence-transformers-openvino")
BATCH_SIZE = 32
STSB_PAIRS = 300  # STS-B dev pairs for the fp32/int8 quality check (as in session 2)


def engine_options(engine: str) -> dict:
    """decoder2vec engine name -> Encoder.from_pretrained keywords."""
    if engine == "decoder2vec-fast":
        return {"fast": True}
    if engine == "decoder2vec-bf16-linears":
        return {"quantize": "bf16"}
    backend = next((b for b in ("onnx", "openvino") if f"-{b}" in engine), "torch")
    quantize = "int8-activations" if engine.endswith("-int8-activations") else "int8" if "int8" in engine else None
    return {"backend": backend, "quantize": quantize,
            "compile": engine.endswith("-compiled"), "dtype": "bfloat16" if "-bf16" in engine else None}


def weights_of(engine: str) -> str:
    if engine == "decoder2vec-fast":
        from decoder2vec.cpu import fast_engine

        return f"fast: {fast_engine()}"
    if engine == "decoder2vec-bf16-linears":
        return "bf16 Linear matmuls, the rest float32"
    if engine.endswith("-int8-activations"):
        return "int8 weights and per-token int8 activations"
    return "int8" if "int8" in engine else "bfloat16" if "-bf16" in engine else \
        "float32, oneDNN matmuls" if "-onednn" in engine else "float32"


# ---------------------------------------------------------------- workers (one process each)
def load_st_exported(engine: str, model: str):
    """sentence-transformers 5 with backend onnx/openvino, in st_backends_setup.sh's venv (no
    decoder2vec imports: that venv has transformers 4.5x). `model`: common.st_backends_model_dir,
    which holds decoder2vec's exported bidirectional graph, so optimum loads it and exports nothing."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    backend = engine.rpartition("-")[2]
    body = Transformer(model, max_seq_length=512, backend=backend)
    # As for the torch engine: sentence-transformers >= 5.7 renders plain texts through the chat
    # template (SmolLM2-Instruct has one); the other engines encode the bare text.
    getattr(body, "modality_config", {}).pop("message", None)
    if body.tokenizer.pad_token is None:
        body.tokenizer.pad_token = body.tokenizer.eos_token
    st = SentenceTransformer(modules=[body, Pooling(body.get_word_embedding_dimension(), "mean")], device="cpu",
                             backend=backend)
    return lambda texts: st.encode(texts, batch_size=BATCH_SIZE, show_progress_bar=False)


def load_engine(engine: str, model: str | None = None):
    """-> encode function texts -> vectors."""
    if engine in ST_EXPORTED:
        return load_st_exported(engine, model)
    import torch

    from decoder2vec import Encoder, make_bidirectional
    from decoder2vec.model.loading import resolve_model

    if engine == "sentence-transformers":
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

        body = Transformer(resolve_model(model), max_seq_length=512, model_kwargs={"dtype": torch.float32})
        # sentence-transformers 6 renders plain texts through the tokenizer's chat template when it
        # has one (SmolLM2-Instruct does): ~20 extra tokens per text and different vectors. The
        # other engines encode the bare text, so this one must too.
        body.modality_config.pop("message", None)
        make_bidirectional(body.auto_model)
        st = SentenceTransformer(modules=[body, Pooling(body.get_embedding_dimension(), "mean")], device="cpu")
        return lambda texts: st.encode(texts, batch_size=BATCH_SIZE, show_progress_bar=False)
    options = engine_options(engine)
    if options.get("backend", "torch") == "torch":
        options["device"] = "cpu"
    encoder = Encoder.from_pretrained(model, pooling="mean", bidirectional=True, max_length=512, **options)
    if engine.endswith("-onednn"):
        encoder.backend.matmul = "onednn"
    return lambda texts: encoder.encode(texts, batch_size=BATCH_SIZE)


def worker(engine: str, texts_file: str, output: str, warmup: int = 8, stsb_model: str | None = None,
           model: str | None = None) -> None:
    import torch

    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    started = time.perf_counter()
    try:
        encode = load_engine(engine, model)
    except Exception as exc:  # noqa: BLE001 - ST raises a bare Exception when optimum is missing
        if not engine.startswith("sentence-transformers-"):
            raise
        print(json.dumps({"engine": engine, "skipped": f"{type(exc).__name__}: {exc}"[:300]}))
        return
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    encode(texts[:warmup])
    # torch.compile specialises on the first shape and goes dynamic on the second; the exported
    # engines plan per shape: warm a second shape for all (reported, not counted in tokens/s).
    encode(texts[warmup:2 * warmup + 3])
    warmup_seconds = time.perf_counter() - started
    start = time.perf_counter()
    vectors = encode(texts)
    seconds = time.perf_counter() - start
    np.save(output, np.asarray(vectors, dtype=np.float32))
    # tokens/s is computed by the parent (count_tokens needs decoder2vec, absent from the ST venv).
    report = {
        "engine": engine, "texts": len(texts), "seconds": seconds, "load_seconds": load_seconds, "warmup_seconds": warmup_seconds,
        "threads": torch.get_num_threads(), "peak_rss_mib": peak_rss_mib(),
        "weights": "float32" if engine.startswith("sentence-transformers") else weights_of(engine),
    }
    if stsb_model is not None and engine.startswith("decoder2vec"):
        report["stsb_dev"] = stsb_spearman(load_engine(engine, stsb_model), limit=STSB_PAIRS)
    print(json.dumps(report))


# ---------------------------------------------------------------- STS-B (fp32 vs int8)
def stsb_spearman(encode, limit: int | None = None) -> float:
    """STS-B en dev Spearman x100 of cosine vs gold, through one engine's encode."""
    from scipy.stats import spearmanr

    from decoder2vec.data.sources import stsb

    pairs = stsb("en", "dev")[:limit]
    left, right, gold = [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs]
    vectors = np.asarray(encode(left + right))
    return float(100 * spearmanr(cosines(vectors[: len(left)], vectors[len(left):]), gold).statistic)


# ---------------------------------------------------------------- the run
def worker_main() -> None:
    """The command line of one engine's process (the same one as benchmarks/reference/worker.py)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True, choices=ENGINES[1:])
    parser.add_argument("--texts", required=True, help="JSON list of strings")
    parser.add_argument("--output", required=True, help=".npy file for the vectors")
    parser.add_argument("--stsb-model", dest="stsb_model")
    parser.add_argument("--model", help="model folder (sentence-transformers' onnx/openvino engines)")
    args = parser.parse_args()
    worker(args.worker, args.texts, args.output, stsb_model=args.stsb_model, model=args.model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1000, help="how many Wikipedia paragraphs")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every engine, alternated")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--no-stsb", dest="stsb", action="store_false", help="skip the STS-B check")
    parser.add_argument("--stsb-model", dest="stsb_model", default="runs/demo/supervised",
                        help="trained encoder for the per-engine STS-B dev Spearman (default runs/demo/supervised; "
                             "the packaged SmolLM2 is untrained and scores near 0)")
    parser.add_argument("--json", dest="json_out", help="write the table as JSON here")
    parser.add_argument("--stsb-only", dest="stsb_only", action="store_true",
                        help="only the STS-B check of our engines, in this process (no timing: a quality figure "
                             "that may be taken on a busy machine)")
    parser.add_argument("--st-python", dest="st_python", default=None,
                        help="python with sentence-transformers[onnx,openvino] for those two engines (default: the "
                             "venv benchmarks/st_backends_setup.sh builds on first use)")
    args = parser.parse_args()
    if args.stsb and not Path(args.stsb_model).exists():
        raise SystemExit(f"--stsb-model {args.stsb_model} does not exist (train it: decoder2vec demo) or pass --no-stsb")
    if args.stsb_only:
        for name in args.engines:
            if name.startswith("decoder2vec"):
                score = stsb_spearman(load_engine(name, args.stsb_model), limit=STSB_PAIRS)
                print(f"{name:32s} STS-B dev ({STSB_PAIRS} pairs) Spearman x100 {score:6.2f}", flush=True)
        return
    if "llm2vec" not in args.engines:
        raise SystemExit("the reference engine llm2vec is needed: ratios and cosines are measured against it")

    import torch

    from decoder2vec import Encoder
    from decoder2vec.cpu import cpu_features

    texts = wiki_texts(args.texts)
    tokens = count_tokens(texts)
    workdir = scratch_dir()
    peak = matmul_peak_gflops()
    flops_per_token = 2 * non_embedding_params(Encoder.from_pretrained().model)
    load_before = os.getloadavg()[0]
    cpu_line = cpu_features().line()
    print(cpu_line, flush=True)
    print(f"{len(texts)} Wikipedia paragraphs, {tokens} tokens; torch threads {torch.get_num_threads()}; "
          f"fp32 matmul peak {peak:.0f} GFLOP/s; load average {load_before:.1f}", flush=True)

    commands = {name: [sys.executable, __file__, "--worker", name] for name in args.engines if name != "llm2vec"}
    st_exported = [name for name in args.engines if name in ST_EXPORTED]
    if st_exported:
        # Both run decoder2vec's exported graph / IR (built here once, from the artifact cache).
        graph = Encoder.from_pretrained(backend="onnx", pooling="mean", bidirectional=True, max_length=512).backend.graph
        ir = Encoder.from_pretrained(backend="openvino", pooling="mean", bidirectional=True, max_length=512).backend.ir
        try:
            st_python = args.st_python or st_backends_python()
        except subprocess.CalledProcessError as exc:  # no network for pip, say: those two are skipped
            print(f"sentence-transformers onnx/openvino skipped: st_backends_setup.sh failed: {exc.stderr[-300:]}")
            args.engines = [name for name in args.engines if name not in st_exported]
        else:
            for name in st_exported:
                commands[name] = [st_python, __file__, "--worker", name,
                                  "--model", st_backends_model_dir(workdir, graph, ir)]
    commands["llm2vec"] = reference_command()
    # STS-B (a second model load and ~1,500 pairs) runs in round 1 only: round 1 is also the one
    # left out of peak RSS (it exports), so the other rounds measure one model's memory.
    stsb = ["--stsb-model", args.stsb_model] if args.stsb else []
    runs: dict[str, list[dict]] = {name: [] for name in args.engines}
    vectors: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        order = args.engines[r % len(args.engines):] + args.engines[: r % len(args.engines)]
        for name in order:
            command = commands[name] + (stsb if r == 0 and name != "llm2vec" else [])
            report, vecs = run_worker(command, texts, workdir, f"{name}-{r}")
            if "skipped" in report:
                print(f"  round {r + 1} {name:30s} skipped: {report['skipped']}", flush=True)
                continue
            if name != "llm2vec":
                report["tokens"], report["tokens_per_s"] = tokens, tokens / report["seconds"]
            runs[name].append(report)
            vectors.setdefault(name, vecs)
            print(f"  round {r + 1} {name:30s} {report['tokens_per_s']:7.0f} tokens/s  "
                  f"{report['peak_rss_mib']:6.0f} MiB", flush=True)
    peak = max(peak, matmul_peak_gflops())
    load_after = os.getloadavg()[0]

    reference_speed = statistics.median(run["tokens_per_s"] for run in runs["llm2vec"])
    print(f"\n{cpu_line}\nload average before {load_before:.1f}, after {load_after:.1f}; fp32 matmul peak "
          f"{peak:.0f} GFLOP/s")
    header = (f"{'engine':32s} {'tokens/s':>9s} {'x ref':>6s} {'peak RSS MiB':>13s} {'% peak':>7s} "
              f"{'min cos vs ref':>15s} {'vs fp32':>9s} {'load s':>7s} {'warm-up s':>10s} {'STS-B':>6s}")
    print(header + "\n" + "-" * len(header))
    table = {}
    for name in args.engines:
        if not runs[name]:
            continue
        speed = statistics.median(run["tokens_per_s"] for run in runs[name])
        # Round 1 of an exported engine also exports (torch model + tracer in memory): its peak
        # RSS is the export's; later rounds load the cached artifact. load_s keeps round 1.
        rss = max(run["peak_rss_mib"] for run in (runs[name][1:] or runs[name]))
        mfu = 100 * speed * flops_per_token / (peak * 1e9)
        cos = float(cosines(vectors[name], vectors["llm2vec"]).min())
        stsb = runs[name][0].get("stsb_dev")
        table[name] = {
            "tokens_per_s": speed, "x_llm2vec": speed / reference_speed, "peak_rss_mib": rss,
            "min_cos_llm2vec": cos, "weights": runs[name][0].get("weights", "float32"),
            "min_cos_fp32": float(cosines(vectors[name], vectors["decoder2vec"]).min())
            if name.startswith("decoder2vec") and "decoder2vec" in vectors else None,
            "ours": name.startswith("decoder2vec"), "stsb_dev": stsb,
            "load_s": runs[name][0].get("load_seconds"),  # the first round's: an export happens there
            "warmup_s": max(run.get("warmup_seconds", 0.0) for run in runs[name]),
        }
        row = table[name]
        fp32_cos = "" if row["min_cos_fp32"] is None else f"{row['min_cos_fp32']:.6f}"
        print(f"{name:32s} {speed:9.0f} {row['x_llm2vec']:6.2f} {rss:13.0f} {mfu:7.1f} {cos:15.6f} {fp32_cos:>9s} "
              f"{row['load_s'] or 0:7.1f} {row['warmup_s']:10.1f} {'' if stsb is None else f'{stsb:6.2f}':>6s}")
    print()
    for name in args.engines:
        if name.startswith("decoder2vec-") and name in vectors and "decoder2vec" in vectors:
            cos = cosines(vectors[name], vectors["decoder2vec"])
            print(f"{name} vs decoder2vec fp32 cosine: min {cos.min():.4f}  mean {cos.mean():.4f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"engines": table, "cpu": cpu_line, "texts": len(texts), "tokens": tokens,
                                                   "rounds": args.rounds, "load_average": [load_before, load_after]},
                                                  indent=2) + "\n")
        print(f"wrote {args.json_out}")


if __name__ == "__main__":
    worker_main() if "--worker" in sys.argv else main()
