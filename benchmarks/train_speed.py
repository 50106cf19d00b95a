"""Training throughput per stage on the packaged SmolLM2-135M (this machine, CPU).

    .venv/bin/python benchmarks/train_speed.py [--steps 3] [--batch 8] [--max-length 64]
    .venv/bin/python benchmarks/train_speed.py --compare-bf16 --steps 20   # fp32 vs bf16 autocast, one run

Runs each stage's shipped recipe for a few steps (from the base model, so the stages need not be
chained) and prints tokens/s and the share of the measured fp32 matmul peak. FLOPs per token:
4 x decoder-layer parameters (LoRA: forward 2N + backward through activations 2N). Step 1 (warm-up)
is left out of the average. Shared or busy machines give lower figures: the load is printed too.

--compare-bf16 runs every stage twice from the same seed - fp32, then under bf16 autocast (the
Trainer's bf16 on CPU: fp32 master weights and optimizer state; losses and scores in fp32) - and
prints both tokens/s and the held-out loss after the same steps (evaluated in fp32), with the
relative difference: `fast: true` trains in bf16 on a CPU class only where bf16 is faster on
every stage and those losses are within 2 % (cpu.FAST_TRAINING). --json writes the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import tempfile
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "src" / "decoder2vec" / "recipes" / "smollm2-135m"
STAGES = ("mntp", "simcse", "supervised", "distill")


def recipe(stage: str) -> Path:
    return RECIPES / "distill" / "distill.yaml" if stage == "distill" else RECIPES / f"{stage}.yaml"


def run_stage(stage: str, folder: str, args, bf16: bool) -> dict:
    from decoder2vec.training import train

    extra = {"bf16": True, "use_cpu": True} if bf16 else {}
    out = train(recipe(stage), model="smollm2-135m", output_dir=folder, max_steps=args.steps, logging_steps=1,
                save_steps=10_000, report_to="none", per_device_train_batch_size=args.batch,
                train_max_length=args.train_max_length, data_limit=max(64, args.batch * args.steps) + args.eval,
                eval_examples=args.eval, training_args=extra)
    with open(out / "logs" / "log.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("tokens_per_s")]
    timed = rows[1:] or rows
    record = json.loads((out / "decoder2vec_config.json").read_text())["stages"][-1]
    losses = [value for key, value in record.get("after", {}).items() if key.endswith("eval_loss")]
    return {"tokens_per_s": sum(float(r["tokens_per_s"]) for r in timed) / len(timed),
            "peak_percent": sum(float(r["peak_percent"]) for r in timed) / len(timed),
            "eval_loss": losses[0] if losses else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train-max-length", dest="train_max_length", type=int, default=64)
    parser.add_argument("--stages", nargs="+", default=list(STAGES[:3]), choices=STAGES)
    parser.add_argument("--compare-bf16", dest="compare_bf16", action="store_true",
                        help="each stage in fp32 and in bf16 autocast, same seed and steps")
    parser.add_argument("--eval", type=int, default=32, help="held-out examples for the loss after training")
    parser.add_argument("--json", dest="json_out", help="write the results here")
    args = parser.parse_args()

    import torch

    from decoder2vec.cpu import cpu_features
    from decoder2vec.training.throughput import measure_peak_flops

    peak = measure_peak_flops("cuda" if torch.cuda.is_available() else "cpu")
    print(cpu_features().line())
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, "
          f"measured fp32 matmul peak {peak / 1e9:.0f} GFLOP/s", flush=True)
    precisions = ("fp32", "bf16") if args.compare_bf16 else ("fp32",)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages:
            for precision in precisions:
                got = run_stage(stage, f"{tmp}/{stage}-{precision}", args, bf16=precision == "bf16")
                results.setdefault(stage, {})[precision] = got
                print(f"{stage:11} {precision} batch {args.batch:3} train_max_length {args.train_max_length:4}: "
                      f"{got['tokens_per_s']:8.1f} tokens/s ({got['peak_percent']:.1f}% of fp32 peak) over steps "
                      f"2..{args.steps}; held-out loss after {got['eval_loss']}", flush=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    if args.compare_bf16:
        print(f"\n{'stage':11} {'fp32 tok/s':>10} {'bf16 tok/s':>10} {'x':>5} {'fp32 loss':>9} {'bf16 loss':>9} "
              f"{'diff %':>7}")
        for stage, row in results.items():
            a, b = row["fp32"], row["bf16"]
            diff = (100 * (b["eval_loss"] - a["eval_loss"]) / a["eval_loss"]
                    if a["eval_loss"] and b["eval_loss"] is not None else float("nan"))
            row["speedup"], row["loss_diff_percent"] = b["tokens_per_s"] / a["tokens_per_s"], diff
            print(f"{stage:11} {a['tokens_per_s']:10.1f} {b['tokens_per_s']:10.1f} {row['speedup']:5.2f} "
                  f"{a['eval_loss']:9.4f} {b['eval_loss']:9.4f} {diff:7.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"cpu": cpu_features().line(), "steps": args.steps,
                                                   "batch": args.batch, "stages": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
