"""Matryoshka: one stage trained twice from the same model, without and with matryoshka_dims
[D, D/2, D/4, D/8], each evaluated at full, 1/2, 1/4 and 1/8 of the dimension (truncate_dim).

    .venv/bin/python benchmarks/matryoshka.py --recipe smollm2-135m/supervised \
        --model runs/smollm2-135m/simcse --suite quick --output-dir runs/matryoshka

Any stage recipe works (simcse, supervised, distill); --set key=value overrides its keys for both
runs (e.g. --set max_steps=20). Trained folders and results go to --output-dir
(<output-dir>/plain, <output-dir>/matryoshka, results.json); a rerun skips what is finished. Prints
one markdown table: rows = training, columns = dimension, cells = the suite's average.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

from decoder2vec import Encoder
from decoder2vec.cli.train import recipe_path
from decoder2vec.evaluation import evaluate
from decoder2vec.training import train
from decoder2vec.training.config import parse_value

FRACTIONS = (1, 2, 4, 8)


class Truncated:
    """An Encoder whose vectors are cut to `dim` (what encode(truncate_dim=dim) gives)."""

    def __init__(self, encoder: Encoder, dim: int):
        self.encoder, self.dim = encoder, dim
        self.tokenizer, self.config = encoder.tokenizer, encoder.config

    def encode(self, texts, *, instruction=None, batch_size=32, normalize_embeddings=False, show_progress_bar=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the untrained-size warning, expected for the plain run
            return self.encoder.encode(texts, instruction=instruction, batch_size=batch_size,
                                       normalize_embeddings=normalize_embeddings, truncate_dim=self.dim,
                                       show_progress_bar=show_progress_bar)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", required=True, help="a stage recipe file or packaged name (smollm2-135m/supervised)")
    parser.add_argument("--model", required=True, help="the model both runs start from")
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--tasks", nargs="*", default=None, help="only these tasks of the suite")
    parser.add_argument("--output-dir", default="runs/matryoshka")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    out = Path(args.output_dir)
    overrides = {}
    for item in args.overrides:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
    dimension = Encoder.from_pretrained(args.model).dimension
    dims = [dimension // f for f in FRACTIONS]
    runs = {"plain": {}, "matryoshka": {"matryoshka_dims": dims}}
    table, timings = {}, {}
    for name, extra in runs.items():
        started = time.perf_counter()
        folder = train(recipe_path(args.recipe), **{**overrides, "model": args.model,
                                                    "output_dir": str(out / name), **extra})
        timings[f"train {name}"] = round(time.perf_counter() - started, 1)
        encoder = Encoder.from_pretrained(folder)
        for dim in dims:
            started = time.perf_counter()
            result = evaluate(Truncated(encoder, dim), suite=args.suite, tasks=args.tasks, cache=False,
                              name=f"{name}-{dim}", verbose=False)
            timings[f"evaluate {name} {dim}"] = round(time.perf_counter() - started, 1)
            table.setdefault(name, {})[dim] = result["averages"]["all"]
    (out / "results.json").write_text(json.dumps({"dims": dims, "averages": table, "seconds": timings}, indent=2))
    print(f"| training | {' | '.join(f'{d} ({dimension // d if d else 0}x smaller)' if d != dimension else f'{d} (full)' for d in dims)} |")
    print("|---|" + "---:|" * len(dims))
    for name, row in table.items():
        label = "matryoshka_dims " + str(dims) if name == "matryoshka" else "no Matryoshka"
        print(f"| {label} | {' | '.join(f'{row[d]:.4f}' for d in dims)} |")
    print(f"\nseconds: {timings}")


if __name__ == "__main__":
    main()
