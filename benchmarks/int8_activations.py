"""int8 activations on OpenVINO: static per-layer scales (NNCF full int8) against per-token groups
(OpenVINO's dynamic quantisation, what quantize="int8-activations" runs) and weight-only int8 -
min / mean cosine against the fp32 vectors on Wikipedia paragraphs (packaged SmolLM2-135M).

    .venv/bin/python benchmarks/int8_activations.py [--texts 48] [--calibration 32]

Static: `nncf.quantize` with the transformer preset (SmoothQuant on), calibrated on --calibration
paragraphs drawn with another seed, each alone (no padding). The int8-activation engines forward
one length at a time; weight-only int8 keeps padded batches, as its engine does. No timing (speed: encode_speed.py). Quantising takes minutes.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from common import wiki_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=48)
    parser.add_argument("--calibration", type=int, default=32)
    args = parser.parse_args()

    import nncf
    import openvino as ov

    from decoder2vec import Encoder
    from decoder2vec.backends.openvino import ACTIVATION_GROUP, OpenVinoBackend
    from decoder2vec.cpu import cpu_features

    print(cpu_features().line())
    texts = wiki_texts(args.texts)
    calibration = wiki_texts(400, seed=1)[:args.calibration]
    encoder = Encoder.from_pretrained(backend="openvino")
    int8_ir = Encoder.from_pretrained(backend="openvino", quantize="int8").backend.ir
    config, pad_id = encoder.backend.config, encoder.backend.pad_id
    inputs = []
    for text in calibration:
        ids = encoder.tokenizer(text, truncation=True, max_length=512)["input_ids"]
        inputs.append({"input_ids": np.array([ids], dtype=np.int64),
                       "attention_mask": np.ones((1, len(ids)), dtype=np.int64)})
    static = nncf.quantize(ov.Core().read_model(str(encoder.backend.ir)), nncf.Dataset(inputs),
                           model_type=nncf.ModelType.TRANSFORMER, subset_size=len(inputs),
                           preset=nncf.QuantizationPreset.MIXED)
    with tempfile.TemporaryDirectory() as tmp:
        static_ir = f"{tmp}/static.xml"
        ov.save_model(static, static_ir, compress_to_fp16=False)
        exact = encoder.encode(texts, normalize_embeddings=True)
        print(f"{len(texts)} paragraphs; static scales from {len(inputs)} paragraphs of another draw")
        for name, ir, properties, unpadded in [
            ("int8 weights only", int8_ir, {}, False),
            (f"per-token groups of {ACTIVATION_GROUP}", int8_ir, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": ACTIVATION_GROUP},
             True),
            ("static per layer (NNCF)", static_ir, {}, True),
        ]:
            encoder.backend = OpenVinoBackend(ir, config, pad_id, weights="int8", properties=properties)
            encoder.backend.unpadded = unpadded
            cos = (encoder.encode(texts, normalize_embeddings=True) * exact).sum(1)
            print(f"{name:26} min cos {cos.min():.5f}  mean {cos.mean():.5f}", flush=True)


if __name__ == "__main__":
    main()
