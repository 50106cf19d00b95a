"""Where encode's time goes, per engine, and backend settings compared back to back.

    .venv/bin/python benchmarks/profile_encode.py --texts 300                 # the split + op shares
    .venv/bin/python benchmarks/profile_encode.py --texts 300 --knobs         # settings, one process
    .venv/bin/python benchmarks/profile_encode.py --texts 20 --engines decoder2vec-openvino   # proves it runs

Split: encode's own steps timed one by one on the same texts, batches and settings as
Encoder.encode (batch_size 32, max_batch_tokens 16384, length-sorted): tokenization (the
Encoder's tokenize), padding (building the padded id/mask arrays), forward (the backend),
pooling (mean over the pool mask). "padding %" is the share of the forward's tokens that are
padding. Op shares (a second pass, under the engine's profiler: torch.profiler, OpenVINO
PERF_COUNT per-node timings, ONNX Runtime session profiling): the share of forward time in
matrix products (Linear/FullyConnected/MatMul/Gemm), attention (SDPA / attention MatMuls inside
OpenVINO's or ORT's fused nodes count as matmuls), and everything else (norms, RoPE, activations,
copies).

--knobs: for each exported backend, candidate settings (OpenVINO performance hint, ORT graph
optimisation level and thread spinning, encode's batch_size / max_batch_tokens) loaded in one
process and timed in rotation, --repeats times; reported as the median tokens/s and its ratio to
the first (current default) candidate. On a busy machine only these ratios mean anything.
Same model and texts as benchmarks/encode_speed.py (the packaged SmolLM2, bidirectional, mean).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time

import numpy as np
import torch

from common import count_tokens, wiki_texts
from decoder2vec import Encoder
from decoder2vec.backends.base import forward_batches, pad
from decoder2vec.backends.onnx import OnnxBackend, require
from decoder2vec.backends.openvino import OpenVinoBackend
from decoder2vec.encoder import _length_batches
from decoder2vec.model.pooling import pool
from encode_speed import BATCH_SIZE, engine_options

ENGINES = ("decoder2vec", "decoder2vec-onnx", "decoder2vec-openvino", "decoder2vec-onnx-int8",
           "decoder2vec-openvino-int8")
MAX_BATCH_TOKENS = 16384  # Encoder.encode's default
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear",  # torch
              "FullyConnected", "MatMul", "Gemm", "MatMulNBits", "MatMulInteger",  # OpenVINO / ORT
              "FusedMatMul", "DynamicQuantizeMatMul"}
ATTENTION_OPS = {"aten::_scaled_dot_product_flash_attention_for_cpu", "aten::scaled_dot_product_attention",
                 "ScaledDotProductAttention", "ScaledAttn", "Attention", "MultiHeadAttention"}


def load(engine: str, model: str | None) -> Encoder:
    options = engine_options(engine)
    if options["backend"] == "torch":
        options["device"] = "cpu"
    return Encoder.from_pretrained(model, pooling="mean", bidirectional=True, max_length=512, **options)


def batches(encoder: Encoder, texts, batch_size: int, max_batch_tokens: int | None):
    """encode's batching: (token id lists, pool masks) per length-sorted batch, and the tokenize time."""
    start = time.perf_counter()
    ids, masks, _ = encoder.tokenize(texts)
    tokenize_s = time.perf_counter() - start
    order = np.argsort([-len(x) for x in ids], kind="stable")
    out, i = [], 0
    for size in _length_batches([len(ids[j]) for j in order], batch_size, max_batch_tokens):
        rows = order[i:i + size]
        i += size
        out.append(([ids[j] for j in rows], [masks[j] for j in rows]))
    return out, tokenize_s


def split(encoder: Encoder, texts) -> dict:
    """Seconds per encode step, the same steps Encoder.encode runs (backend.states = pad + forward)."""
    work, seconds = batches(encoder, texts, BATCH_SIZE, MAX_BATCH_TOKENS)
    times = collections.Counter(tokenize=seconds)
    real = padded = 0
    with torch.inference_mode():
        for ids, masks in work:
            t0 = time.perf_counter()
            input_ids, attention = pad(ids, encoder.backend.pad_id)
            # The exported backends split a batch into forward calls of at most
            # max_forward_tokens padded tokens, each padded to its own longest text.
            pieces = list(forward_batches(ids, encoder.backend.pad_id, encoder.backend.max_forward_tokens)) \
                if encoder.backend.name != "torch" else [(input_ids, attention)]
            t1 = time.perf_counter()
            states = encoder.backend.states(ids)[0] if len(pieces) > 1 else \
                encoder.backend.forward(input_ids.to(encoder.device), attention.to(encoder.device))
            t2 = time.perf_counter()
            pool_mask = torch.zeros(attention.shape, dtype=torch.int64)
            for row, mask in enumerate(masks):
                pool_mask[row, :len(mask)] = torch.from_numpy(mask.astype(np.int64))
            pool(states, pool_mask.to(states.device), attention.to(states.device), "mean").cpu().numpy()
            t3 = time.perf_counter()
            times.update(padding=t1 - t0, forward=t2 - t1, pooling=t3 - t2)
            real += sum(len(x) for x in ids)
            padded += sum(piece.numel() for piece, _ in pieces)
    return {**times, "padding_share": 1 - real / padded}


def op_shares(engine: str, encoder: Encoder, texts, model: str | None) -> tuple[dict, list]:
    """(matmul / attention / other shares of forward time, top ops) under the engine's profiler."""
    work, _ = batches(encoder, texts, BATCH_SIZE, MAX_BATCH_TOKENS)
    per_op: collections.Counter = collections.Counter()
    backend = encoder.backend
    if backend.name == "torch":
        with torch.inference_mode(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for ids, _ in work:
                backend.states(ids)
        for event in prof.key_averages():
            per_op[event.key] += event.self_cpu_time_total / 1e6
    elif backend.name == "openvino":
        profiled = OpenVinoBackend(backend.ir, backend.config, backend.pad_id, weights=backend.weights,
                                   properties={"PERF_COUNT": True})
        for ids, _ in work:
            for piece in forward_batches(ids, backend.pad_id, backend.max_forward_tokens):
                profiled.forward(*piece)
                for node in profiled.request.profiling_info:
                    per_op[node.node_type] += node.real_time.total_seconds()
    else:
        ort = require("onnxruntime", "profiling the onnx backend")
        options = ort.SessionOptions()
        options.enable_profiling = True
        profiled = OnnxBackend(backend.graph, backend.config, backend.pad_id, weights=backend.weights,
                               options=options)
        for ids, _ in work:
            profiled.states(ids)
        with open(profiled.session.end_profiling()) as trace:
            for event in json.load(trace):
                if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                    per_op[event["args"]["op_name"]] += event["dur"] / 1e6
    total = sum(per_op.values()) or 1.0
    matmul = sum(s for op, s in per_op.items() if op in MATMUL_OPS)
    attention = sum(s for op, s in per_op.items() if op in ATTENTION_OPS)
    shares = {"matmul": matmul / total, "attention": attention / total, "other": 1 - (matmul + attention) / total}
    return shares, [(op, s / total) for op, s in per_op.most_common(6)]


def profile(args, texts, tokens) -> None:
    print(f"{'engine':28s} {'tok/s':>6s} {'tokenize':>9s} {'padding':>8s} {'forward':>8s} {'pooling':>8s} "
          f"{'pad %':>6s} {'matmul %':>9s} {'attn %':>7s} {'other %':>8s}  top ops (share of forward)")
    for engine in args.engines:
        encoder = load(engine, args.model)
        encoder.encode(texts[:8])  # first shapes (OpenVINO / ORT plan per shape; not timed)
        times = split(encoder, texts)
        wall = sum(v for k, v in times.items() if k != "padding_share")
        shares, top = op_shares(engine, encoder, texts, args.model)
        pct = {k: 100 * v / wall for k, v in times.items() if k != "padding_share"}
        print(f"{engine:28s} {tokens / wall:6.0f} {pct['tokenize']:8.1f}% {pct['padding']:7.1f}% "
              f"{pct['forward']:7.1f}% {pct['pooling']:7.1f}% {100 * times['padding_share']:6.1f} "
              f"{100 * shares['matmul']:9.1f} {100 * shares['attention']:7.1f} {100 * shares['other']:8.1f}  "
              + ", ".join(f"{op} {100 * s:.0f}%" for op, s in top), flush=True)
        del encoder


def knob_candidates(engine: str, encoder: Encoder) -> list[tuple[str, object, dict]]:
    """(label, backend, encode keywords): the current default first."""
    b = encoder.backend
    same = dict(weights=b.weights, threads=torch.get_num_threads())
    out = [("default", b, {})]
    if b.name == "openvino":
        out.append(("hint THROUGHPUT", OpenVinoBackend(b.ir, b.config, b.pad_id, **same,
                                                        properties={"PERFORMANCE_HINT": "THROUGHPUT"}), {}))
    elif b.name == "onnx":
        ort = require("onnxruntime", "the onnx backend")
        for label, setup in (("no spinning", lambda o: o.add_session_config_entry("session.intra_op.allow_spinning", "0")),
                             ("opt level EXTENDED", lambda o: setattr(o, "graph_optimization_level",
                                                                       ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED))):
            options = ort.SessionOptions()
            setup(options)
            out.append((label, OnnxBackend(b.graph, b.config, b.pad_id, **same, options=options), {}))
    for size, budget in ((16, MAX_BATCH_TOKENS), (64, MAX_BATCH_TOKENS), (32, 8192), (32, 4096)):
        out.append((f"batch_size {size} max_batch_tokens {budget}", b,
                    {"batch_size": size, "max_batch_tokens": budget}))
    return out


def knobs(args, texts, tokens) -> None:
    for engine in args.engines:
        encoder = load(engine, args.model)
        candidates = knob_candidates(engine, encoder)
        speeds: dict[str, list[float]] = {label: [] for label, _, _ in candidates}
        for r in range(args.repeats + 1):  # repeat 0 warms every candidate's shapes
            for label, backend, kwargs in candidates[r % len(candidates):] + candidates[:r % len(candidates)]:
                encoder.backend = backend
                start = time.perf_counter()
                encoder.encode(texts, **{"batch_size": BATCH_SIZE, **kwargs})
                if r:
                    speeds[label].append(tokens / (time.perf_counter() - start))
        base = statistics.median(speeds["default"])
        for label, _, _ in candidates:
            speed = statistics.median(speeds[label])
            print(f"{engine:28s} {label:40s} {speed:6.0f} tok/s  x{speed / base:.2f} of default", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=300, help="how many Wikipedia paragraphs")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--model", default=None, help="default: the packaged SmolLM2-135M")
    parser.add_argument("--knobs", action="store_true", help="compare backend settings instead of profiling")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per candidate with --knobs")
    args = parser.parse_args()
    texts = wiki_texts(args.texts)
    tokens = count_tokens(texts)
    print(f"{len(texts)} Wikipedia paragraphs, {tokens} tokens; torch threads {torch.get_num_threads()}", flush=True)
    (knobs if args.knobs else profile)(args, texts, tokens)


if __name__ == "__main__":
    main()
