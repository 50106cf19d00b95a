"""Does decoder2vec give the same vectors as the reference llm2vec 0.2.3 for the same weights?

    .venv/bin/python benchmarks/reference_equality.py             # 500 Wikipedia paragraphs
    .venv/bin/python benchmarks/reference_equality.py --texts 50  # quick
    .venv/bin/python benchmarks/reference_equality.py --json runs/bench/reference_equality.json

Both encode the packaged SmolLM2-135M (bidirectional attention, mean pooling, no instruction):
llm2vec in its own venv (transformers 4.44.2, built by benchmarks/reference/setup.sh, ~2 min the
first time) and decoder2vec here (transformers 5). Prints the minimum and mean cosine between
the two vectors of each text; the target is min >= 0.9999. Texts stay within 400 tokens, the
length up to which llm2vec leaves a document untouched (its doc_max_length).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import cosines, count_tokens, reference_command, run_worker, scratch_dir, wiki_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=500, help="how many Wikipedia paragraphs")
    parser.add_argument("--target", type=float, default=0.9999)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    from decoder2vec import Encoder

    texts = wiki_texts(args.texts)
    print(f"{len(texts)} Wikipedia paragraphs, {count_tokens(texts)} tokens")
    report, reference = run_worker(reference_command(), texts, scratch_dir(), "reference")
    print(f"llm2vec 0.2.3: {report['tokens_per_s']:.0f} tokens/s")

    encoder = Encoder.from_pretrained(pooling="mean", bidirectional=True, max_length=512)
    ours = encoder.encode(texts, batch_size=32)
    cos = cosines(ours, reference)
    worst = np.argsort(cos)[:3]
    print(f"cosine decoder2vec vs llm2vec: min {cos.min():.6f}  mean {cos.mean():.6f}  "
          f"(texts below {args.target}: {(cos < args.target).sum()})")
    for i in worst:
        print(f"  worst {cos[i]:.6f}: {texts[i][:70]!r}")
    print("PASS" if cos.min() >= args.target else "FAIL", f"min cosine >= {args.target}")
    if args.json:
        report = {"texts": len(texts), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
                  "below_target": int((cos < args.target).sum()), "target": args.target,
                  "passed": bool(cos.min() >= args.target),
                  "worst": [{"cosine": float(cos[i]), "text": texts[i][:70]} for i in worst]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
