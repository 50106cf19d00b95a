"""The distill stage's teacher in fp32 against bf16 autocast (issue 25): texts/s, and how far the
bf16 vectors are from the fp32 ones (min / mean cosine), on the texts a recipe has it label - the
queries and documents of a query -> document source, each on its side (the teacher's own prompts).
The forward is the stage's own (training/teacher.py: encode_with_teacher under forward_precision),
batch teacher_batch_size; the distill stage runs it in bf16 where `fast: true` trains distill in
bf16 on this CPU (cpu.FAST_TRAINING).

    flock /tmp/d2v-heavy.lock nice -n 10 .venv/bin/python benchmarks/teacher_speed.py --texts 200

Each round times both precisions (order alternating between rounds); the first round is preceded
by a short warm-up of each. Reported: the median over rounds, the CPU line and the load average
before and after.
"""

from __future__ import annotations

import argparse
import os
import random

import numpy as np
import torch

from common import cosines, median_seconds
from decoder2vec.cpu import cpu_features
from decoder2vec.data.pairs import load_pairs
from decoder2vec.training.teacher import _anchor, encode_with_teacher, forward_precision


def texts_of(source: str, count: int, seed: int) -> tuple[list[str], list[str]]:
    """count // 2 seeded pairs of `source`: their queries and their documents."""
    pairs = load_pairs(source)
    pairs = random.Random(seed).sample(pairs, min(len(pairs), count // 2))
    return [p.query for p in pairs], [p.positive for p in pairs]


def label(teacher: str, sides: dict[str, list[str]], precision: str, batch_size: int) -> np.ndarray:
    """The vectors of every side's texts in order, one pass in `precision`."""
    parts = []
    for side, texts in sides.items():
        with forward_precision(precision):
            parts.append(encode_with_teacher(teacher, texts, batch_size=batch_size, side=side))
    return np.concatenate(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="embeddinggemma-300m")
    parser.add_argument("--source", default="manpage-summaries-da", help="a query -> document pair source")
    parser.add_argument("--texts", type=int, default=200, help="texts labelled per pass (half queries, half documents)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="the stage's teacher_batch_size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(cpu_features().line())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average before "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    queries, documents = texts_of(args.source, args.texts, args.seed)
    sides = {"query": queries, "document": documents}
    count = len(queries) + len(documents)
    print(f"teacher {args.teacher}; {count} texts of {args.source} ({len(queries)} queries, {len(documents)} "
          f"documents, mean {np.mean([len(t) for t in queries + documents]):.0f} characters), batch {args.batch_size}")
    warm = {side: texts[:4] for side, texts in sides.items()}
    for precision in ("fp32", "bf16"):
        label(args.teacher, warm, precision, args.batch_size)  # loads the teacher once; first bf16 kernels
    vectors = {}

    def each(round_: int, precision: str, took: float, labelled: np.ndarray) -> None:
        vectors[precision] = labelled
        print(f"  round {round_ + 1} {precision}: {count / took:.1f} texts/s ({took:.1f} s)")

    calls = {p: (lambda p=p: label(args.teacher, sides, p, args.batch_size)) for p in ("fp32", "bf16")}
    seconds = median_seconds(calls, args.rounds, each=each)  # round 2 runs bf16 first, and so on
    _anchor.cache_clear()
    rate = {p: count / s for p, s in seconds.items()}
    cos = cosines(vectors["fp32"], vectors["bf16"])
    print(f"fp32 {rate['fp32']:.1f} texts/s, bf16 autocast {rate['bf16']:.1f} texts/s: "
          f"{rate['bf16'] / rate['fp32']:.2f}x (median of {args.rounds} rounds)")
    print(f"cosine bf16 vs fp32: min {cos.min():.5f}, mean {cos.mean():.5f} (queries min "
          f"{cos[:len(queries)].min():.5f}, documents min {cos[len(queries):].min():.5f})")
    print(f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
