"""The bf16 accuracy gate (issue 27): min cosine against the fp32 vectors on the benchmark's
Wikipedia paragraphs (>= 0.999) and the STS-B dev drop (<= 0.5 points), per way of running bf16
on the torch backend, plus where along the layers a bf16 run drifts from fp32.

    .venv/bin/python benchmarks/bf16_gate.py --texts 300                        # packaged SmolLM2
    .venv/bin/python benchmarks/bf16_gate.py --texts 100 --model runs/q/r3/out --stsb   # trained

Modes (all CPU, every one on the same fp32 checkpoint):
- "bf16 weights": the whole model in bf16 (`dtype="bfloat16"`): residual stream, norms, softmax too;
- "autocast": torch.autocast("cpu", bfloat16) around encode: Linear and attention in bf16, bf16 outputs;
- "bf16 linears": `quantize="bf16"` (model/bf16_linear.py): only the Linear matmuls in bf16 (bf16
  kernels), their outputs widened to fp32; norms, softmax, residual stream, pooling fp32;
- "rounding only": the Linear layers' inputs and weights rounded to bf16, computed in fp32 - what a
  bf16 matmul with fp32 accumulation and fp32 output (AMX) does at best;
- "openvino bf16": INFERENCE_PRECISION_HINT=bf16.
No timing: accuracy figures (speed: encode_speed.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import cosines, wiki_texts

MODES = ("bf16 weights", "autocast", "bf16 linears", "rounding only", "openvino bf16")


@contextlib.contextmanager
def rounded_linears():
    """Every nn.Linear computes from bf16-rounded inputs and weights, in fp32 (an emulation)."""
    original = nn.Linear.forward

    def forward(self, x):
        return F.linear(x.bfloat16().float(), self.weight.bfloat16().float(),
                        None if self.bias is None else self.bias.bfloat16().float())

    nn.Linear.forward = forward
    try:
        yield
    finally:
        nn.Linear.forward = original


def load(model, mode):
    from decoder2vec import Encoder

    options = {"bf16 weights": {"dtype": "bfloat16"}, "bf16 linears": {"quantize": "bf16"},
               "openvino bf16": {"backend": "openvino", "dtype": "bfloat16"}}.get(mode, {})
    if options.get("backend") != "openvino":
        options["device"] = "cpu"
    return Encoder.from_pretrained(model, **options)


def encode(encoder, mode, texts):
    context = {"autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
               "rounding only": rounded_linears}.get(mode, contextlib.nullcontext)
    with torch.inference_mode(), context():
        return np.asarray(encoder.encode(texts, batch_size=32, normalize_embeddings=True), dtype=np.float32)


def layer_drift(reference, encoder, mode, text):
    """Relative error ||h - h_fp32|| / ||h_fp32|| of every layer's output hidden states, one text."""
    ids = reference.tokenize([text])[0]
    batch = reference.collate(ids, [[1] * len(ids[0])])
    context = {"autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
               "rounding only": rounded_linears}.get(mode, contextlib.nullcontext)
    with torch.inference_mode():
        exact = reference.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                output_hidden_states=True, use_cache=False).hidden_states
        with context():
            other = encoder.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                  output_hidden_states=True, use_cache=False).hidden_states
    return [float((o.float() - e).norm() / e.norm()) for e, o in zip(exact, other)]


def stsb_spearman(encoder, mode, pairs) -> float:
    from scipy.stats import spearmanr

    left, right, gold = [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs]
    vectors = encode(encoder, mode, left + right)
    return float(100 * spearmanr(cosines(vectors[: len(left)], vectors[len(left):]), gold).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--model", default=None, help="encoder folder (default: the packaged SmolLM2)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--stsb", action="store_true", help="also STS-B en dev per mode (a trained --model)")
    parser.add_argument("--stsb-pairs", dest="stsb_pairs", type=int, default=300, help="STS-B dev pairs (of 1,500)")
    args = parser.parse_args()

    from decoder2vec.cpu import cpu_features
    from decoder2vec.data.sources import stsb

    print(cpu_features().line())
    print(f"load average {os.getloadavg()[0]:.1f}; model {args.model or 'packaged SmolLM2-135M'}", flush=True)
    texts = wiki_texts(args.texts)
    reference = load(args.model, "fp32")
    exact = encode(reference, "fp32", texts)
    lengths = np.array([len(ids) for ids in reference.tokenize(texts)[0]])
    pairs = stsb("en", "dev")[:args.stsb_pairs] if args.stsb else []
    base = stsb_spearman(reference, "fp32", pairs) if args.stsb else None
    print(f"{len(texts)} paragraphs, {lengths.min()}-{lengths.max()} tokens"
          + (f"; STS-B dev fp32 {base:.2f} ({len(pairs)} pairs)" if args.stsb else ""))
    print(f"{'mode':16} {'min cos':>9} {'mean cos':>9} {'texts<0.999':>12} {'worst tokens':>13} {'STS-B':>7} {'drop':>6}",
          flush=True)
    for mode in args.modes:
        encoder = reference if mode in ("autocast", "rounding only") else load(args.model, mode)
        cos = (encode(encoder, mode, texts) * exact).sum(1)
        score = stsb_spearman(encoder, mode, pairs) if args.stsb else None
        worst = int(cos.argmin())
        row = f"{mode:16} {cos.min():9.5f} {cos.mean():9.5f} {int((cos < 0.999).sum()):12d} {lengths[worst]:13d}"
        if score is not None:
            row += f" {score:7.2f} {base - score:6.2f}"
        print(row, flush=True)
        if encoder.model is not None:
            drift = layer_drift(reference, encoder, mode, texts[worst])
            print("  worst text, relative error after embeddings / each layer: "
                  + " ".join(f"{d:.0e}" for d in drift), flush=True)
        if encoder is not reference:
            del encoder


if __name__ == "__main__":
    main()
