"""Seconds per training step of a distill recipe on its own batches: one padded batch against the
batch split by length (training/contrastive.length_groups), with LoRA dropout (0.05) and without
it. One run, the same batches in every mode, modes taking turns (common.median_seconds).

    .venv/bin/python benchmarks/step_speed.py                       # the Danish recipe, 6 batches x 3 rounds
    .venv/bin/python benchmarks/step_speed.py --recipe gemma3-270m-de/distill-embeddinggemma/distill --batches 4

A step here is the student's forward and backward on one batch of the recipe's texts (queries with
their instruction, documents, translations: what DistillStage.collate builds) under the recipe's
precision (bf16 autocast where `fast: true` trains in bf16 on this CPU); the loss is the vectors'
squared norm, so no teacher runs; the optimizer step (over 4 M LoRA parameters) is left out.
Prints the padded tokens of one batch and of the split, seconds per step, the machine's CPU line
and the load average.
"""

from __future__ import annotations

import argparse
import os
import random
from contextlib import nullcontext

import torch

from common import median_seconds

from decoder2vec.cli.train import recipe_path
from decoder2vec.cpu import cpu_features, trains_in_bf16
from decoder2vec.training import contrastive
from decoder2vec.training.config import load_recipe
from decoder2vec.training.distill import DistillStage, distill_examples, student_texts
from decoder2vec.training.lora import add_lora


def batches(stage: DistillStage, count: int) -> list:
    """`count` batches of the recipe's examples, shuffled with its seed (training's own order also holds
    examples out and reshuffles; any order of the same sources has the same mix of lengths)."""
    cfg = stage.config
    examples = distill_examples(cfg)
    random.Random(cfg.seed).shuffle(examples)
    size = cfg.per_device_train_batch_size
    out = []
    for start in range(0, size * count, size):
        texts, _, instructions = student_texts(examples[start:start + size])
        ids, masks = stage.tokenize(texts, instructions if any(instructions) else None)
        out.append(stage.view.collate(ids, masks))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="gemma3-270m-da/distill-embeddinggemma/distill")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lora-dropout", dest="lora_dropout", type=float, default=0.05,
                        help="the LoRA dropout compared with none (0.05: the library's default, the paper's)")
    args = parser.parse_args()

    config = load_recipe(recipe_path(args.recipe), output_dir="/tmp/step-speed-unused")
    stage = DistillStage(config)
    stage.load()
    data = batches(stage, args.batches)
    bf16 = trains_in_bf16(config.stage, config.fast)
    torch.manual_seed(config.seed)
    model = add_lora(stage.net, r=config.lora_r, alpha=config.lora_alpha, dropout=args.lora_dropout)
    model.train()
    # peft builds an Identity where lora_dropout is 0: the no-dropout mode swaps the recipe's Dropouts for that.
    dropouts = [(holder, key, holder[key]) for module in model.modules() if hasattr(module, "lora_dropout")
                for holder in [module.lora_dropout] for key in list(holder.keys())]

    def step(groups: int, dropout: bool):
        def run():
            contrastive.MAX_GROUPS = groups
            for holder, key, original in dropouts:
                holder[key] = original if dropout else torch.nn.Identity()
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
                for batch in data:
                    stage.embed(model, batch).pow(2).sum().backward()
            model.zero_grad(set_to_none=True)
        return run

    groups = contrastive.MAX_GROUPS
    modes = {f"one padded batch, lora_dropout {args.lora_dropout}": step(1, True),
             f"split by length, lora_dropout {args.lora_dropout}": step(groups, True),
             "one padded batch, lora_dropout 0": step(1, False),
             "split by length, lora_dropout 0": step(groups, False)}
    padded = sum(b.attention_mask.numel() for b in data)
    split = sum(sum(len(g) * max(int(b.attention_mask[r].sum()) for r in g)
                    for g in contrastive.length_groups(b.attention_mask.sum(dim=1).tolist())) for b in data)
    print(f"{cpu_features().line()}; torch {torch.get_num_threads()} threads; {'bf16 autocast' if bf16 else 'fp32'}")
    print(f"{args.recipe}: {args.batches} batches of {config.per_device_train_batch_size} examples; padded tokens: "
          f"one batch {padded}, split by length {split} ({split / padded:.0%})")
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    seconds = median_seconds(modes, args.rounds)
    base = seconds[next(iter(modes))]
    for name, value in seconds.items():
        print(f"{name:42s} {value / args.batches:6.2f} s/step  {base / value:5.2f}x")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
