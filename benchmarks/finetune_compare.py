"""Fine-tuning comparison (issue 18), in the spirit of the German study's SuperGLEBer: converted
decoders and a small encoder fine-tuned on the same classification task with the same budget.

Task: BBC News topics (5 classes), the suite's fixed stratified train/test halves
(evaluation.task_data.bbc_split): --train-per-label articles per topic from the training half to
train on, --test-sample articles of the test half to score (accuracy). Every model goes through
the same `decoder2vec finetune` stage: LoRA r=16 on the layers and a new head trained in full,
the same steps x batch x train_max_length, learning rate and seed. Wall time: the stage (load,
train, merge, save) and the test-set prediction, on this machine (threads: torch's default).

    python benchmarks/finetune_compare.py                       # sized for <= 15 min on a free 2-core CPU (not yet timed)
    python benchmarks/finetune_compare.py --models smollm2-135m minilm --steps 4 --test-sample 20   # smoke
    python benchmarks/finetune_compare.py --json runs/bench/finetune_compare.json

Models (names): smollm2-135m (packaged, bidirectional), smollm2-135m-causal (the same, causal: the
control), gemma3-270m (packaged, bidirectional), minilm (packaged all-MiniLM-L6-v2, an encoder),
or any folder / hub id (e.g. the demo's runs/demo-quick/mntp, an MNTP-trained SmolLM2: not in the
default run, which stays under 15 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from transformers import AutoTokenizer

from decoder2vec import Encoder
from decoder2vec.classification import load_for_classification, predict
from decoder2vec.folder.anchors import minilm_path
from decoder2vec.evaluation.task_data import bbc_split
from decoder2vec.training import train

DEFAULT_MODELS = ["smollm2-135m", "smollm2-135m-causal", "gemma3-270m", "minilm"]


def model_source(name: str) -> tuple[str, bool | None]:
    """(what the finetune stage loads, bidirectional override or None for the folder's own)."""
    if name == "minilm":
        return minilm_path(), None
    if name.endswith("-causal"):
        return name.removesuffix("-causal"), False
    return name, None


def write_split(folder: Path, texts, labels) -> Path:
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels)),
                    encoding="utf-8")
    return path


def run_one(name: str, train_file: Path, test, args, work: Path) -> dict:
    source, bidirectional = model_source(name)
    output = work / name.replace("/", "_")
    if output.exists() and args.fresh:
        shutil.rmtree(output)
    keys = dict(stage="finetune", model=source, data=[str(train_file)], output_dir=str(output),
                max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                train_max_length=args.train_max_length, learning_rate=args.learning_rate, lora_r=16,
                lora_alpha=32, warmup_steps=0.1, seed=args.seed, logging_steps=max(1, args.steps // 5),
                save_steps=args.steps + 1, report_to=[], full=args.full)
    if bidirectional is False:
        # The causal control: an Encoder folder that says so, fine-tuned like the others.
        causal = work / f"{name}-encoder"
        if not causal.exists():
            Encoder.from_pretrained(source, bidirectional=False).save_pretrained(causal)
        keys["model"] = str(causal)
    start = time.perf_counter()
    folder = train(keys)
    train_s = time.perf_counter() - start
    model = load_for_classification(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts, gold = test
    start = time.perf_counter()
    guessed = predict(model, tokenizer, texts, batch_size=16, max_length=args.train_max_length)
    predict_s = time.perf_counter() - start
    accuracy = sum(g == p for g, p in zip(gold, guessed)) / len(gold)
    parameters = sum(p.numel() for p in model.parameters())
    return {"model": name, "source": str(keys["model"]), "bidirectional": bool(not model.config.is_causal),
            "parameters": parameters, "accuracy": round(accuracy, 4), "train_s": round(train_s, 1),
            "predict_s": round(predict_s, 1), "test_texts": len(gold)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                   help="packaged names, smollm2-135m-causal, minilm, or folders (e.g. runs/demo-quick/mntp)")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per model (same for all)")
    p.add_argument("--batch-size", type=int, default=8, help="texts per step (same for all)")
    p.add_argument("--train-max-length", type=int, default=64, help="tokens per text, training and test")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="peak learning rate (same for all)")
    p.add_argument("--full", action="store_true", help="fine-tune every weight instead of LoRA + head")
    p.add_argument("--train-per-label", type=int, default=40, help="training articles per topic (5 topics)")
    p.add_argument("--test-sample", type=int, default=200, help="test articles scored")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--work", default="runs/finetune_compare", help="where the fine-tuned classifiers are kept")
    p.add_argument("--fresh", action="store_true", help="train again even when a classifier is already there")
    p.add_argument("--json", default=None, metavar="OUT", help="write the rows and settings to this file")
    args = p.parse_args(argv)
    models = args.models
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    (train_x, train_y), test = bbc_split(args.train_per_label, args.test_sample, args.seed, None)
    train_file = write_split(work, train_x, train_y)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"BBC News: {len(train_x)} training articles, {len(test[0])} test; {args.steps} steps x {args.batch_size} "
          f"texts x {args.train_max_length} tokens; {'full' if args.full else 'LoRA r=16 + head'}, "
          f"lr {args.learning_rate}; threads {os.environ.get('OMP_NUM_THREADS', 'default')}; uptime: {load}")
    rows = []
    for name in models:
        rows.append(run_one(name, train_file, test, args, work))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n| model | parameters | bidirectional | accuracy | fine-tune s | predict s ({len(test[0])} texts) |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['parameters'] / 1e6:.0f}M | {'yes' if r['bidirectional'] else 'no'} | "
              f"{r['accuracy']:.3f} | {r['train_s']:.0f} | {r['predict_s']:.0f} |")
    print(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"settings": vars(args), "uptime": load, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
