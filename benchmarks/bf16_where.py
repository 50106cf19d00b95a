"""Where does bf16 lose accuracy? Min cosine against the fp32 vectors on Wikipedia paragraphs
(the packaged SmolLM2-135M, mean pooling, bidirectional) when the Linear layers' inputs and
weights are rounded to bf16 (what a bf16 matmul with fp32 accumulation does: AMX, oneDNN's
bf16 fpmath) - all of them, or all but one group. Norms, softmax, the residual stream and pooling
stay fp32 throughout, so what is left is the matmuls themselves.

    .venv/bin/python benchmarks/bf16_where.py [--texts 64]

Emulated in fp32 arithmetic (rounding only), so it runs on any CPU; the fp32 reference runs the
same kernels. No timing.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn as nn

from common import wiki_texts

GROUPS = {
    "every Linear in bf16": lambda name: True,
    "bf16 weights, fp32 inputs": None,
    "all but layer 0": lambda name: not name.startswith("layers.0."),
    "all but the last layer": lambda name: not name.startswith("layers.29."),
    "all but q/k": lambda name: not name.endswith(("q_proj", "k_proj")),
    "all but v/o": lambda name: not name.endswith(("v_proj", "o_proj")),
    "all but gate/up": lambda name: not name.endswith(("gate_proj", "up_proj")),
    "all but down": lambda name: not name.endswith("down_proj"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=64)
    args = parser.parse_args()

    from decoder2vec import Encoder
    from decoder2vec.cpu import cpu_features

    print(cpu_features().line())
    texts = wiki_texts(args.texts)
    encoder = Encoder.from_pretrained(pooling="mean", bidirectional=True, max_length=512)
    linears = {name: m for name, m in encoder.model.named_modules() if isinstance(m, nn.Linear)}
    exact = {name: m.weight.detach().clone() for name, m in linears.items()}
    rounded = {name: w.bfloat16().float() for name, w in exact.items()}
    reference = encoder.encode(texts, batch_size=32, normalize_embeddings=True)
    original = nn.Linear.forward

    def forward(self, x):
        return original(self, x.bfloat16().float() if getattr(self, "round_inputs", False) else x)

    nn.Linear.forward = forward
    lengths = np.array([len(ids) for ids in encoder.tokenize(texts)[0]])
    print(f"{len(texts)} paragraphs, {lengths.min()}-{lengths.max()} tokens")
    print(f"{'what runs in bf16':28} {'min cos':>9} {'mean cos':>9}  worst text's tokens")
    for label, chosen in GROUPS.items():
        for name, module in linears.items():
            in_bf16 = True if chosen is None else chosen(name)
            module.weight.data = rounded[name] if in_bf16 else exact[name]
            module.round_inputs = chosen is not None and in_bf16
        with torch.inference_mode():
            cos = (encoder.encode(texts, batch_size=32, normalize_embeddings=True) * reference).sum(1)
        print(f"{label:28} {cos.min():9.5f} {cos.mean():9.5f}  {lengths[cos.argmin()]}", flush=True)


if __name__ == "__main__":
    main()
