"""Training throughput per stage on the packaged SmolLM2-135M (this machine, fp32 on CPU).

    .venv/bin/python benchmarks/train_speed.py [--steps 3] [--batch 8] [--max-length 64]

Runs each stage's shipped recipe for a few steps (from the base model, so the stages need not be
chained) and prints tokens/s and the share of the measured fp32 matmul peak. FLOPs per token:
4 x decoder-layer parameters (LoRA: forward 2N + backward through activations 2N). Step 1 (warm-up)
is left out of the average. Shared or busy machines give lower figures: the load is printed too.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "src" / "decoder2vec" / "recipes" / "smollm2-135m"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train-max-length", dest="train_max_length", type=int, default=64)
    parser.add_argument("--stages", nargs="+", default=["mntp", "simcse", "supervised"])
    args = parser.parse_args()

    import torch

    from decoder2vec.training import train
    from decoder2vec.training.throughput import measure_peak_flops

    peak = measure_peak_flops("cuda" if torch.cuda.is_available() else "cpu")
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, "
          f"measured fp32 matmul peak {peak / 1e9:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages:
            out = train(RECIPES / f"{stage}.yaml", model="smollm2-135m", output_dir=f"{tmp}/{stage}",
                        max_steps=args.steps, logging_steps=1, save_steps=10_000, report_to="none",
                        per_device_train_batch_size=args.batch, train_max_length=args.train_max_length,
                        data_limit=max(64, args.batch * args.steps), **({"eval_examples": 8} if stage == "mntp" else {}))
            with open(out / "logs" / "log.csv", newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("tokens_per_s")]
            timed = rows[1:] or rows
            rate = sum(float(r["tokens_per_s"]) for r in timed) / len(timed)
            share = sum(float(r["peak_percent"]) for r in timed) / len(timed)
            print(f"{stage:11} batch {args.batch:3} train_max_length {args.train_max_length:4}: {rate:8.1f} tokens/s "
                  f"({share:.1f}% of peak) over steps 2..{args.steps}")


if __name__ == "__main__":
    main()
