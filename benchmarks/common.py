"""Shared pieces of the benchmark scripts: the texts, the reference llm2vec 0.2.3 run, and
the machine measurements (matmul peak, peak RSS). Not part of the library."""

from __future__ import annotations

import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "benchmarks" / "reference"
sys.path.insert(0, str(ROOT / "src"))


# ---------------------------------------------------------------- texts
def wiki_texts(n: int, *, min_tokens: int = 4, max_tokens: int = 400, seed: int = 0) -> list[str]:
    """n real English Wikipedia paragraphs of mixed length (min_tokens..max_tokens SmolLM2 tokens),
    in a seeded random order. Paragraphs as they are (headings, list items, long prose), so the
    length mix is the natural one. max_tokens=400 keeps every text inside llm2vec's
    doc_max_length, so the reference and decoder2vec see the same tokens."""
    from decoder2vec.data.sources import wikipedia_en_articles
    from decoder2vec.model.loading import load_tokenizer

    paragraphs = [p.strip() for article in wikipedia_en_articles() for p in article.split("\n") if p.strip()]
    lengths = [len(ids) for ids in load_tokenizer(None)(paragraphs)["input_ids"]]
    pool = [p for p, n_tok in zip(paragraphs, lengths) if min_tokens <= n_tok <= max_tokens]
    if n > len(pool):
        raise SystemExit(f"only {len(pool)} paragraphs of {min_tokens}..{max_tokens} tokens; asked for {n}")
    return random.Random(seed).sample(pool, n)


def count_tokens(texts: list[str]) -> int:
    from decoder2vec.model.loading import load_tokenizer

    return sum(len(ids) for ids in load_tokenizer(None)(texts)["input_ids"])


# ---------------------------------------------------------------- reference llm2vec 0.2.3
def reference_python() -> str:
    """The reference venv's python (built on first use by setup.sh, ~2 minutes)."""
    out = subprocess.run(["bash", str(REFERENCE / "setup.sh")], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def reference_model_dir() -> str:
    """A copy of the packaged SmolLM2 folder that transformers 4.44 reads (weights linked)."""
    sys.path.insert(0, str(REFERENCE))
    from prepare_model import prepare

    from decoder2vec.model.loading import cache_dir, resolve_model

    source = Path(resolve_model(None))
    return str(prepare(source, cache_dir() / "llm2vec-models" / source.name))


def run_worker(command: list[str], texts: list[str], workdir: Path, name: str) -> tuple[dict, np.ndarray]:
    """Run one encoding worker process on texts; return its JSON report and its vectors."""
    texts_file, vectors_file = workdir / "texts.json", workdir / f"{name}.npy"
    if not texts_file.exists():
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
    proc = subprocess.run(
        command + ["--texts", str(texts_file), "--output", str(vectors_file)], capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} worker failed:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skipped" in report:  # an engine whose optional packages are missing: no vectors
        return report, None
    return report, np.load(vectors_file)


def st_backends_python() -> str:
    """The python of sentence-transformers' onnx/openvino venv (built on first use by
    st_backends_setup.sh, a few minutes): optimum needs transformers < 4.58."""
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "st_backends_setup.sh")], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def st_backends_model_dir(workdir: Path, graph: Path, ir: Path) -> str:
    """A folder that optimum (transformers 4.5x) loads without exporting anything: the reference
    copy of the packaged SmolLM2 (reference_model_dir) plus decoder2vec's own exported fp32 graph as
    onnx/model.onnx and its OpenVINO IR as openvino/openvino_model.xml - the bidirectional model,
    so sentence-transformers' engines compute the same vectors (all files linked, none copied)."""
    target = workdir / "st-backends-model"
    target.mkdir(exist_ok=True)
    for file in Path(reference_model_dir()).iterdir():
        if file.is_file() and not (target / file.name).exists():
            (target / file.name).symlink_to(file.resolve())
    links = {"onnx/model.onnx": graph, "openvino/openvino_model.xml": ir,
             "openvino/openvino_model.bin": Path(ir).with_suffix(".bin")}
    for name, source in links.items():
        (target / name).parent.mkdir(exist_ok=True)
        if not (target / name).exists():
            (target / name).symlink_to(Path(source).resolve())
    return str(target)


def reference_command() -> list[str]:
    return [reference_python(), str(REFERENCE / "worker.py"), "--model", reference_model_dir()]


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="decoder2vec-bench-"))


# ---------------------------------------------------------------- measurements
def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def median_seconds(calls: dict[str, Callable[[], object]], rounds: int, *,
                   each: Callable[[int, str, float, object], None] | None = None) -> dict[str, float]:
    """{name: median seconds of calls[name]() over `rounds`}. Round r starts at the (r mod n)-th call
    and takes the others in turn, so no call always runs first (on a CPU still warming up or just
    throttled). each(round, name, seconds, result), if given, sees every call as it finishes."""
    names = list(calls)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            result = calls[name]()
            took = time.perf_counter() - start
            seconds[name].append(took)
            if each is not None:
                each(r, name, took, result)
    return {name: statistics.median(s) for name, s in seconds.items()}


def peak_rss_mib() -> float:
    """This process's peak resident memory. /proc's VmHWM where there is one: Linux's ru_maxrss
    carries over fork + exec the resident size of the parent at the fork, so a worker started by a
    benchmark whose parent holds 1.9 GB reported at least 1.9 GB whatever it used."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The fp32 matmul throughput this machine reaches with torch (best of `repeats`)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def non_embedding_params(model) -> int:
    """Parameters that take part in a matmul per token (model FLOPs = 2 x this x tokens)."""
    import torch.nn as nn

    embedding = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    return sum(p.numel() for p in model.parameters()) - embedding
