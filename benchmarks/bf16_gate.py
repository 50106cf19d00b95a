"""The bf16 accuracy gate (issue 27): min cosine against the fp32 vectors on the benchmark's
Wikipedia paragraphs (>= 0.999) and the STS-B dev drop (<= 0.5 points; int8 activations: <= 1.0),
per way of running bf16 (and OpenVINO's int8 activations), plus where along the layers a bf16 run
drifts from fp32; with --speed, each one's tokens/s in the same run.

    .venv/bin/python benchmarks/bf16_gate.py --texts 300                        # packaged SmolLM2
    .venv/bin/python benchmarks/bf16_gate.py --texts 100 --model runs/q/r3/out --stsb   # trained
    .venv/bin/python benchmarks/bf16_gate.py --model DIR --stsb --modes "bf16 linears" --fp32-last-layers 1 2 --speed

Modes (all CPU, every one on the same fp32 checkpoint):
- "bf16 weights": the whole model in bf16 (`dtype="bfloat16"`): residual stream, norms, softmax too;
- "autocast": torch.autocast("cpu", bfloat16) around encode: Linear and attention in bf16, bf16 outputs;
- "bf16 linears": `quantize="bf16"` (model/bf16_linear.py): only the Linear matmuls in bf16 (bf16
  kernels), their outputs widened to fp32; norms, softmax, residual stream, pooling fp32; the engine
  keeps the first decoder layer's Linears fp32 (quantize_model's bf16 branch);
- "bf16 linears, all": the same with every decoder layer's Linears bf16 (the engine before issue 27's
  first-layer rule);
- "rounding only": the Linear layers' inputs and weights rounded to bf16, computed in fp32 - what a
  bf16 matmul with fp32 accumulation and fp32 output (AMX) does at best;
- "openvino bf16": INFERENCE_PRECISION_HINT=bf16;
- "int8 activations": `quantize="int8-activations"` (OpenVINO int8 weights, per-token int8 activations);
- "bf16, last N fp32" (--fp32-last-layers N ...): bf16 linears with the last N decoder layers' Linears
  fp32 (to_bf16_linears' skip, decoder_layer_prefixes), layer 0 bf16 unless N covers it: is it their drift that the final norm amplifies?
- "bf16, first N fp32" (--fp32-first-layers N ...): the same for the first N decoder layers.
--speed: tokens/s (text tokens, no padding, / seconds in encode(), batch 32, median of --rounds,
the modes taking turns within a round; the accuracy pass is the warm-up) for fp32 and every mode,
one process, so the ratios are what to read on a shared machine (encode_speed.py: one process per engine).
"""

from __future__ import annotations

import argparse
import contextlib
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import cosines, median_seconds, wiki_texts

MODES = ("bf16 weights", "autocast", "bf16 linears", "bf16 linears, all", "rounding only", "openvino bf16",
         "int8 activations")


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


def load(model, mode, fp32_layers: int | None = None):
    """fp32_layers: None, or bf16 linears with the last n (n < 0: the first -n; 0: no) decoder layers fp32."""
    from decoder2vec import Encoder
    from decoder2vec.model.bf16_linear import decoder_layer_prefixes, to_bf16_linears

    options = {"bf16 weights": {"dtype": "bfloat16"}, "bf16 linears": {"quantize": "bf16"},
               "openvino bf16": {"backend": "openvino", "dtype": "bfloat16"},
               "int8 activations": {"backend": "openvino", "quantize": "int8-activations"}}.get(mode, {})
    if options.get("backend") != "openvino":
        options["device"] = "cpu"
    encoder = Encoder.from_pretrained(model, **options)
    if fp32_layers is not None:
        last, first = max(fp32_layers, 0), max(-fp32_layers, 0)
        to_bf16_linears(encoder.model, skip=decoder_layer_prefixes(encoder.model, first=first, last=last))
    return encoder


def tokens_per_second(encoders, modes, texts, tokens: int, rounds: int) -> dict:
    """Median tokens/s per mode over `rounds`, the modes taking turns within each round."""
    calls = {mode: (lambda mode=mode: encode(encoders[mode], mode, texts)) for mode in modes}
    return {mode: tokens / seconds for mode, seconds in median_seconds(calls, rounds).items()}


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
    parser.add_argument("--fp32-last-layers", dest="fp32_last_layers", type=int, nargs="*", default=[],
                        help="also bf16 linears with the last N decoder layers in fp32, one row per N")
    parser.add_argument("--fp32-first-layers", dest="fp32_first_layers", type=int, nargs="*", default=[],
                        help="also bf16 linears with the first N decoder layers in fp32, one row per N")
    parser.add_argument("--speed", action="store_true", help="also tokens/s per mode and fp32, in this process")
    parser.add_argument("--rounds", type=int, default=3, help="timed encodes per mode with --speed")
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
    print(f"{'mode':18} {'min cos':>9} {'mean cos':>9} {'texts<0.999':>12} {'worst tokens':>13} {'STS-B':>7} {'drop':>6}",
          flush=True)
    partial = {"bf16 linears, all": 0} if "bf16 linears, all" in args.modes else {}
    partial |= {f"bf16, last {n} fp32": n for n in args.fp32_last_layers}
    partial |= {f"bf16, first {n} fp32": -n for n in args.fp32_first_layers}
    encoders = {"fp32": reference}
    for mode in dict.fromkeys([*args.modes, *partial]):
        encoder = reference if mode in ("autocast", "rounding only") else load(args.model, mode, partial.get(mode))
        cos = (encode(encoder, mode, texts) * exact).sum(1)
        score = stsb_spearman(encoder, mode, pairs) if args.stsb else None
        worst = int(cos.argmin())
        row = f"{mode:18} {cos.min():9.5f} {cos.mean():9.5f} {int((cos < 0.999).sum()):12d} {lengths[worst]:13d}"
        if score is not None:
            row += f" {score:7.2f} {base - score:6.2f}"
        print(row, flush=True)
        if encoder.model is not None:
            drift = layer_drift(reference, encoder, mode, texts[worst])
            print("  worst text, relative error after embeddings / each layer: "
                  + " ".join(f"{d:.0e}" for d in drift), flush=True)
        if args.speed:
            encoders[mode] = encoder
        elif encoder is not reference:
            del encoder
    if args.speed:
        speed = tokens_per_second(encoders, list(encoders), texts, int(lengths.sum()), args.rounds)
        print(f"tokens/s, median of {args.rounds} rounds ({int(lengths.sum())} tokens each); load average "
              f"{os.getloadavg()[0]:.1f}")
        for mode, rate in speed.items():
            print(f"{mode:18} {rate:8.0f} tokens/s {rate / speed['fp32']:5.2f}x fp32", flush=True)


if __name__ == "__main__":
    main()
