"""The exported backends and int8 weights on the real packaged SmolLM2 (issue 23): ONNX Runtime and
OpenVINO give the torch vectors (cosine >= 0.9999, as `Encoder.from_pretrained` promises), and int8
weights on every backend stay at or above the floor docs/performance.md documents. A few texts only:
the exports dominate the time (cached after the first run)."""

from __future__ import annotations

import numpy as np
import pytest

from decoder2vec import Encoder

# Short texts are where int8 loses most on the untrained bidirectional model (docs/performance.md).
TEXTS = [
    "Hi",
    "How do I reset my password?",
    "Quantum computers use qubits instead of bits.",
    "Børn leger i haven.",
    "The recipe calls for two cups of flour, a pinch of salt and three eggs beaten until fluffy.",
    "The Danube flows through ten countries, more than any other river in the world. It rises in the Black "
    "Forest in Germany and empties into the Black Sea, passing Vienna, Bratislava, Budapest and Belgrade.",
]
# docs/performance.md, the session-4 encode_speed table: "decoder2vec-onnx-int8 vs decoder2vec fp32
# cosine: min 0.9241" (300 Wikipedia paragraphs). OpenVINO int8 is held to it too, though that table
# measured 0.8770 for it. On these texts (2026-12-07, 2-core AMD EPYC): torch int8 min 0.9893, ONNX
# int8 0.9970, OpenVINO int8 0.9578 (the recipe text); ONNX and OpenVINO fp32 1.000000.
INT8_FLOOR = 0.924
EXPORTED_MIN_COSINE = 0.9999


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def fp32(smollm2):
    return smollm2.encode(TEXTS)


@pytest.mark.real
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_exported_backend_gives_the_torch_vectors(backend, fp32):
    encoder = Encoder.from_pretrained(backend=backend)
    assert encoder.info()["backend"] == backend and encoder.info()["dtype"] == "float32"
    cosines = _cosines(fp32, encoder.encode(TEXTS))
    assert cosines.min() >= EXPORTED_MIN_COSINE, dict(zip(TEXTS, cosines.round(6)))


@pytest.mark.real
@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
def test_int8_stays_at_the_documented_floor(backend, fp32):
    encoder = Encoder.from_pretrained(backend=backend, quantize="int8")
    assert encoder.info()["backend"] == backend and encoder.info()["dtype"] == "int8"
    cosines = _cosines(fp32, encoder.encode(TEXTS))
    assert cosines.min() >= INT8_FLOOR, dict(zip(TEXTS, cosines.round(6)))
    # Really int8: fp32 vectors would match to ~1e-6.
    assert cosines.min() < 0.99999, dict(zip(TEXTS, cosines.round(6)))
