"""Encoder.compile: torch.compile for inference gives the eager vectors (fp32 and int8)."""

import numpy as np
import pytest
from tiny import CORPUS, tiny_encoder

from decoder2vec.model.quantization import quantize_model


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_compiled_encoder_gives_the_eager_vectors(int8):
    encoder = tiny_encoder("llama")
    if int8:
        quantize_model(encoder, "int8")
    texts = CORPUS[:7]
    eager = encoder.encode(texts, batch_size=3)  # three batch shapes: the dynamic-shape path too
    encoder.compile()
    compiled = encoder.encode(texts, batch_size=3)
    cos = (eager * compiled).sum(1) / np.linalg.norm(eager, axis=1) / np.linalg.norm(compiled, axis=1)
    assert cos.min() >= 0.9999
    assert encoder.backend.compiled is not None


def test_training_never_runs_the_compiled_graph():
    # Gradients must flow through the real (LoRA-wrapped) module, never a compiled copy.
    encoder = tiny_encoder("llama").compile()
    batch = encoder.collate(*encoder.tokenize(CORPUS[:2])[:2])
    vectors = encoder.embed(batch)
    assert vectors.requires_grad
    vectors.sum().backward()
    assert any(p.grad is not None for p in encoder.model.parameters())
