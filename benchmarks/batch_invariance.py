"""Does a text's vector depend on its batch? Per engine, the largest difference (normalised
vectors) between encoding each text alone and all of them in one padded batch, on the packaged
SmolLM2-135M, plus each engine with same-length batching switched off ("padded"), which is how
int8 ran before issue 27 (4e-2 on AVX-512 and AMX CPUs).

    .venv/bin/python benchmarks/batch_invariance.py

No timing: a correctness figure (tests/test_cpu_fast.py asserts the bound on tiny models and on
SmolLM2's int8).
"""

from __future__ import annotations

import contextlib

import numpy as np

TEXTS = ["Short text.", "Paris is the capital of France.", "Hello world",
         "A much longer text that has many more tokens than the others, so it pads every other row.",
         "Embeddings map texts to vectors.", "def f(x): return x + 1", "Kort tekst på dansk.",
         "Eine kurze Frage?", "3.14159", "The quick brown fox jumps over the lazy dog.", "ok", "Why?"]
ENGINES = {"fp32": {}, "int8": {"quantize": "int8"}, "bf16": {"dtype": "bfloat16"}, "onednn": {},
           "openvino-bf16": {"backend": "openvino", "dtype": "bfloat16"}}


@contextlib.contextmanager
def padded_batches(backend):
    """The backend with same-length batching off (a class property or an instance attribute)."""
    cls, missing = type(backend), object()
    saved_cls, saved_own = cls.__dict__.get("unpadded", missing), backend.__dict__.pop("unpadded", missing)
    cls.unpadded = False
    try:
        yield
    finally:
        if saved_cls is missing:
            del cls.unpadded
        else:
            cls.unpadded = saved_cls
        if saved_own is not missing:
            backend.unpadded = saved_own


def worst(encoder) -> float:
    batched = encoder.encode(TEXTS, normalize_embeddings=True)
    alone = np.stack([encoder.encode(text, normalize_embeddings=True) for text in TEXTS])
    return float(np.abs(batched - alone).max())


def main() -> None:
    from decoder2vec import Encoder
    from decoder2vec.cpu import cpu_features

    print(cpu_features().line())
    print(f"{'engine':16} {'same-length batches':>20} {'padded batches':>15}")
    for name, options in ENGINES.items():
        encoder = Encoder.from_pretrained(**options)
        if name == "onednn":
            encoder.backend.matmul = "onednn"
        unpadded = worst(encoder) if encoder.backend.unpadded else None
        with padded_batches(encoder.backend):  # the padded path, as before issue 27
            padded = worst(encoder)
        print(f"{name:16} {'-' if unpadded is None else f'{unpadded:.2e}':>20} {padded:15.2e}", flush=True)


if __name__ == "__main__":
    main()
