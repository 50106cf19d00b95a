"""Resident memory after each step of loading and running one exported engine (where peak RSS goes).

    .venv/bin/python benchmarks/rss_steps.py --backend openvino --texts 40
    .venv/bin/python benchmarks/rss_steps.py --backend openvino --texts 40 --max-forward-tokens 1000000  # whole batches

Reads /proc/self/status (VmRSS now, VmHWM peak) after: imports and texts, the Encoder load (the
exported artifact from decoder2vec's cache; the first use exports it), a first small encode, and
encode of all texts (batch_size 32). --max-forward-tokens overrides Backend.max_forward_tokens
(how many padded tokens one forward call may cover) to show what it bounds. Memory figures do not
depend on how busy the machine is.
"""

from __future__ import annotations

import argparse

from common import wiki_texts
from decoder2vec import Encoder


def rss() -> str:
    with open("/proc/self/status", encoding="ascii") as status:
        fields = dict(line.split(":", 1) for line in status)
    now, peak = (int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))
    return f"RSS {now:6.0f} MiB  peak {peak:6.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="openvino", choices=["onnx", "openvino"])
    parser.add_argument("--quantize", default=None, choices=["int8"])
    parser.add_argument("--texts", type=int, default=40)
    parser.add_argument("--max-forward-tokens", dest="max_forward_tokens", type=int)
    args = parser.parse_args()
    texts = wiki_texts(args.texts)
    print(f"{'imports + texts':28s} {rss()}", flush=True)
    encoder = Encoder.from_pretrained(backend=args.backend, quantize=args.quantize, pooling="mean",
                                      bidirectional=True, max_length=512)
    if args.max_forward_tokens:
        encoder.backend.max_forward_tokens = args.max_forward_tokens
    print(f"{'loaded ' + args.backend:28s} {rss()}", flush=True)
    encoder.encode(texts[:8], batch_size=32)
    print(f"{'encoded 8 texts':28s} {rss()}", flush=True)
    encoder.encode(texts, batch_size=32)
    print(f"{f'encoded {len(texts)} texts':28s} {rss()}  "
          f"(forward calls of <= {encoder.backend.max_forward_tokens} padded tokens)", flush=True)


if __name__ == "__main__":
    main()
