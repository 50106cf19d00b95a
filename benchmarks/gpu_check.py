"""Is training GPU-ready? A few bf16 steps of each stage, then bf16 encoding, with speed figures.

    .venv/bin/python benchmarks/gpu_check.py                 # one GPU, < 8 minutes: SmolLM2-135M and Gemma-3-270M
    .venv/bin/python benchmarks/gpu_check.py --cpu           # the same code path, tiny models (make test runs it)
    .venv/bin/python benchmarks/gpu_check.py --json OUT.json

Per model: MNTP (packed 512-token blocks), SimCSE and supervised (64 x 3 texts of ~500 tokens:
above the chunked-attention threshold, so the long-batch path runs) with gradient checkpointing
on, SDPA attention; then encoding in bf16, padded (SDPA) and, when flash-attn is installed,
unpadded (its varlen kernel). Prints tokens/s and % of the GPU's measured bf16 matmul peak for
each (training: 4 N FLOPs per token with LoRA, + 2 N for the checkpointing recompute is not
counted; encoding: 2 N). Data: synthetic text (a fixed word list), so the check needs no
download. --cpu: tiny random models (SmolLM2's tokenizer), fp32, the chunked threshold lowered
so every contrastive batch takes the long path, 2 steps a stage.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from decoder2vec import Encoder  # noqa: E402
from decoder2vec.backends import torch as torch_backend  # noqa: E402
from decoder2vec.model.loading import load_tokenizer  # noqa: E402
from decoder2vec.training import train  # noqa: E402
from decoder2vec.training.throughput import layer_parameters, measure_peak_flops  # noqa: E402

WORDS = ("model vector token attention layer text query passage answer question retrieval search language "
         "embedding training step batch length mean pool encoder decoder sentence paragraph river city music "
         "history science number table chair window garden winter summer").split()
GPU = {  # stage -> (per-device batch, training length, steps)
    "mntp": (32, 512, 6), "simcse": (128, 128, 6), "supervised": (64, 512, 6)}
CPU = {"mntp": (4, 64, 2), "simcse": (4, 32, 2), "supervised": (4, 64, 2)}
MODELS = ("smollm2-135m", "gemma3-270m")
TINY = {"llama": {}, "gemma3_text": {"head_dim": 8, "sliding_window": 16,
                                     "layer_types": ["sliding_attention", "full_attention"]}}


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def write_data(folder: Path, long_words: int, lines: int) -> tuple[Path, Path]:
    rng = random.Random(0)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(" ".join(words(rng, rng.randint(8, 20)) for _ in range(12)) for _ in range(lines)))
    pairs = folder / "pairs.jsonl"
    with open(pairs, "w") as f:
        for i in range(lines):
            f.write(json.dumps({"query": words(rng, 12), "positive": words(rng, long_words),
                                "negative": words(rng, long_words), "instruction": "Retrieve a passage"}) + "\n")
    return corpus, pairs


def tiny_models(folder: Path) -> list[str]:
    """Tiny random Llama and Gemma-3 folders with SmolLM2's tokenizer (its vocabulary size)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = load_tokenizer(None)
    paths = []
    for family, extra in TINY.items():
        config = AutoConfig.for_model(family, vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id, **extra)
        torch.manual_seed(0)
        path = folder / f"tiny-{family}"
        AutoModelForCausalLM.from_config(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(str(path))
    return paths


def lower_chunked_threshold() -> int:
    """--cpu: every contrastive batch takes the chunked-attention path. Returns the old threshold
    (it lives with the torch backend, which runs the forward) to put back."""
    old = torch_backend.CHUNKED_ATTENTION_ABOVE
    torch_backend.CHUNKED_ATTENTION_ABOVE = 0
    return old


def train_figures(folder: Path) -> dict:
    import csv

    with open(folder / "logs" / "log.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("tokens_per_s")]
    rates = [float(r["tokens_per_s"]) for r in rows[1:] or rows]  # the first step pays warm-up
    peaks = [float(r["peak_percent"]) for r in rows[1:] or rows]
    return {"tokens_per_s": round(sum(rates) / len(rates), 1), "peak_percent": round(sum(peaks) / len(peaks), 2)}


def check_model(model: str, root: Path, sizes: dict, corpus: Path, pairs: Path, dtype: str) -> dict:
    out, figures = root / Path(model).name, {}
    common = {"logging_steps": 1, "report_to": "none", "gradient_checkpointing": True, "dtype": dtype,
              "eval_examples": 0, "lora_r": 16, "lora_alpha": 32}
    stages = {
        "mntp": {"stage": "mntp", "model": model, "data": [str(corpus)], "packing": "blocks"},
        "simcse": {"stage": "simcse", "model": str(out / "mntp"), "data": [str(corpus)], "min_words": 3,
                   "attention_dropout": 0.3, "hidden_dropout": 0.0},
        "supervised": {"stage": "supervised", "model": str(out / "mntp"), "data": [str(pairs)],
                       "instruction_template": "{instruction}; "},
    }
    for stage, recipe in stages.items():
        batch, length, steps = sizes[stage]
        start = time.perf_counter()
        folder = train({**recipe, **common, "output_dir": str(out / stage), "per_device_train_batch_size": batch,
                        "train_max_length": length, "max_steps": steps, "save_steps": max(1, steps // 2)})
        figures[stage] = {**train_figures(folder), "seconds": round(time.perf_counter() - start, 1)}
    encoder = Encoder.from_pretrained(str(out / "supervised"), dtype=getattr(torch, dtype))
    texts = [line for line in corpus.read_text().splitlines()][:256]
    peak = measure_peak_flops(encoder.device, getattr(torch, dtype))
    params = layer_parameters(encoder.model)
    tokens = sum(len(ids) for ids in encoder.tokenizer(texts)["input_ids"])
    modes = {"padded": False}
    if importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available():
        modes["unpadded"] = True
    for name, unpadded in modes.items():
        encoder.encode(texts[:16], batch_size=16, unpadded=unpadded)  # warm-up
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        vectors = encoder.encode(texts, batch_size=64, unpadded=unpadded)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rate = tokens / (time.perf_counter() - start)
        assert torch.isfinite(torch.as_tensor(vectors)).all(), f"{model}: non-finite vectors ({name})"
        figures[f"encode_{name}"] = {"tokens_per_s": round(rate, 1),
                                     "peak_percent": round(100 * 2 * params * rate / peak, 2)}
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="tiny models on the CPU: the same code path in seconds")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--output", help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("no GPU here: run with --cpu for the tiny CPU check")
    root = Path(args.output or tempfile.mkdtemp(prefix="decoder2vec-gpu-check-"))
    root.mkdir(parents=True, exist_ok=True)
    restore = None
    if args.cpu:
        restore = lower_chunked_threshold()
        corpus, pairs = write_data(root, long_words=30, lines=60)
        models, sizes, dtype = tiny_models(root), CPU, "float32"
    else:
        corpus, pairs = write_data(root, long_words=420, lines=600)  # ~500 tokens: 64 x 3 x 512^2 > 2^24
        models, sizes, dtype = list(MODELS), GPU, "bfloat16"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.cpu else "cpu"
    report = {"device": device, "dtype": dtype, "models": {}}
    print(f"{'model':<22}{'step':<18}{'tokens/s':>12}{'% peak':>9}")
    try:
        for model in models:
            figures = check_model(model, root, sizes, corpus, pairs, dtype)
            report["models"][Path(model).name] = figures
            for step, f in figures.items():
                print(f"{Path(model).name:<22}{step:<18}{f['tokens_per_s']:>12.1f}{f['peak_percent']:>9.2f}")
    finally:
        if restore is not None:
            torch_backend.CHUNKED_ATTENTION_ABOVE = restore
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
