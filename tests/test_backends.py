"""Backends x tiny families: every backend gives the plain padded torch vectors, does not depend
on the batch (fp32 and int8 weights, every output precision), and save -> load keeps the vectors.

Each tiny model is saved and exported once per module (the artifact cache lives in a module
temporary folder), so the table costs one export per (family, backend, weights).
"""

import os

import httpx
import numpy as np
import pytest
from tiny import CORPUS, FAMILIES, assert_batch_invariant, tiny_encoder

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.backends import BACKENDS, TorchBackend
from decoder2vec.backends import cache as artifact_cache
from decoder2vec.folder.onnx_export import ONNX_FILE, export_onnx
from decoder2vec.model.precision import PRECISIONS
from decoder2vec.serving import BackgroundServer, ServeSettings

TEXTS = CORPUS[:6]
# Every tiny family exports to ONNX and OpenVINO (checked: all of tests/tiny.py's FAMILIES).
EXPORTABLE = {"torch": list(FAMILIES), "onnx": list(FAMILIES), "openvino": list(FAMILIES)}
TABLE = [(backend, family) for backend in BACKENDS for family in EXPORTABLE[backend]]
# int8 weights and the batch-invariance checks on families with different layer types:
# llama (RoPE, SwiGLU), gpt2 (learned positions, Conv1D), gemma3_text (sliding windows).
INT8_FAMILIES = ["llama", "gpt2", "gemma3_text"]


@pytest.fixture(scope="module", autouse=True)
def artifact_root(tmp_path_factory):
    """A module-private decoder2vec cache: artifacts exported here are reused by every test below."""
    root = tmp_path_factory.mktemp("cache")
    old = os.environ.get("DECODER2VEC_CACHE")
    os.environ["DECODER2VEC_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("DECODER2VEC_CACHE")
    else:
        os.environ["DECODER2VEC_CACHE"] = old


_FOLDERS: dict = {}
_ENCODERS: dict = {}


def folder(family, tmp_path_factory):
    if family not in _FOLDERS:
        _FOLDERS[family] = tiny_encoder(family).save_pretrained(tmp_path_factory.mktemp(family) / "encoder")
    return _FOLDERS[family]


def loaded(family, backend, weights, tmp_path_factory) -> Encoder:
    key = (family, backend, weights)
    if key not in _ENCODERS:
        quantize = None if weights == "float32" else weights
        _ENCODERS[key] = Encoder.from_pretrained(folder(family, tmp_path_factory), backend=backend,
                                                 quantize=quantize)
    return _ENCODERS[key]


def reference(family) -> np.ndarray:
    """The plain padded torch path: the tiny model in memory, one padded batch."""
    return tiny_encoder(family).encode(TEXTS, normalize_embeddings=True, unpadded=False)


@pytest.mark.parametrize(("backend", "family"), TABLE)
def test_fp32_equals_the_padded_torch_path(backend, family, tmp_path_factory):
    encoder = loaded(family, backend, "float32", tmp_path_factory)
    assert encoder.backend.name == backend and encoder.backend.weights == "float32"
    vectors = encoder.encode(TEXTS, normalize_embeddings=True, batch_size=4)
    assert (vectors * reference(family)).sum(1).min() >= 0.9999


@pytest.mark.parametrize("weights", ["float32", "int8"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", INT8_FAMILIES)
def test_vectors_do_not_depend_on_the_batch(family, backend, weights, tmp_path_factory):
    encoder = loaded(family, backend, weights, tmp_path_factory)
    assert encoder.backend.weights == weights
    batched = assert_batch_invariant(encoder, TEXTS)
    # int8 weights stay close to the fp32 vectors of the same backend.
    assert (batched * reference(family)).sum(1).min() > 0.99
    # ... and every output precision of a text is the same alone as in a batch.
    calibration = encoder.encode(CORPUS, normalize_embeddings=True)
    for precision in PRECISIONS:
        kwargs = dict(normalize_embeddings=True, precision=precision, calibration_embeddings=calibration)
        many = encoder.encode(TEXTS, **kwargs).astype(np.int64)
        one = np.stack([encoder.encode(text, **kwargs) for text in TEXTS]).astype(np.int64)
        if precision in ("int8", "uint8"):
            assert np.abs(many - one).max() <= 1  # a 1e-7 float difference may cross one floor step
        elif precision == "float32":
            assert np.abs(many - one).max() == 0  # astype int of unit floats: sign-only view
        else:
            near_zero = np.abs(batched) < 1e-4  # a sign flip is possible only there
            flips = np.unpackbits(many.astype(np.uint8), axis=1) != np.unpackbits(one.astype(np.uint8), axis=1)
            assert not (flips & ~near_zero).any()


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_batch_runs_as_forward_calls_of_bounded_size_with_the_same_vectors(backend, tmp_path_factory, monkeypatch):
    encoder = loaded("llama", backend, "float32", tmp_path_factory)
    whole = encoder.encode(TEXTS, normalize_embeddings=True)
    widths = []
    forward = encoder.backend.forward
    monkeypatch.setattr(encoder.backend, "forward", lambda ids, mask: widths.append(ids.shape) or forward(ids, mask))
    monkeypatch.setattr(encoder.backend, "max_forward_tokens", 1)  # one text per forward call
    split = encoder.encode(TEXTS, normalize_embeddings=True)
    # One call per text, each padded to that text's own length only.
    assert sorted(widths) == sorted((1, len(ids)) for ids in encoder.tokenize(TEXTS)[0])
    np.testing.assert_allclose(split, whole, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_gives_the_same_vectors_and_reuses_the_artifact(backend, tmp_path, monkeypatch):
    encoder = tiny_encoder("qwen2")
    before = encoder.encode(TEXTS, normalize_embeddings=True)
    saved = encoder.save_pretrained(tmp_path / "enc")
    first = Encoder.from_pretrained(saved, backend=backend)
    np.testing.assert_allclose(first.encode(TEXTS, normalize_embeddings=True), before, atol=1e-5)
    # A second load finds the exported artifact: no export (and no torch model load) again.
    monkeypatch.setattr("decoder2vec.encoder.export_graph", _no_export)
    again = Encoder.from_pretrained(saved, backend=backend)
    np.testing.assert_allclose(again.encode(TEXTS, normalize_embeddings=True), before, atol=1e-5)


def _no_export(*args, **kwargs):
    raise AssertionError("exported again: the cached artifact was not used")


def test_onnx_export_folder_carries_its_graph(tmp_path, monkeypatch):
    """`export --to onnx`'s folder: the onnx backend runs its own graph (nothing exported to the
    cache), and the openvino backend converts that graph instead of exporting again."""
    encoder = tiny_encoder("llama")
    out = export_onnx(encoder, tmp_path / "onnx")
    assert (out / ONNX_FILE).is_file()
    monkeypatch.setattr("decoder2vec.encoder.export_graph", _no_export)
    for backend in ("onnx", "openvino"):
        other = Encoder.from_pretrained(out, backend=backend)
        np.testing.assert_allclose(other.encode(TEXTS, normalize_embeddings=True, instruction="Find:"),
                                   encoder.encode(TEXTS, normalize_embeddings=True, instruction="Find:"), atol=1e-5)
    assert Encoder.from_pretrained(out, backend="onnx").backend.graph == out / ONNX_FILE


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_serving_an_exported_backend_returns_the_encode_vectors(backend, tmp_path_factory):
    encoder = loaded("llama", backend, "float32", tmp_path_factory)
    with BackgroundServer(encoder, ServeSettings(model_name="tiny")) as url:
        body = httpx.post(f"{url}/v1/embeddings", json={"input": TEXTS}).json()
    np.testing.assert_allclose([d["embedding"] for d in body["data"]],
                               encoder.encode(TEXTS, normalize_embeddings=True), atol=1e-5)


def test_one_pipeline_one_encoder_class(tmp_path_factory):
    # No subclass: every backend is an Encoder whose encode is Encoder.encode.
    for backend in BACKENDS:
        encoder = loaded("llama", backend, "float32", tmp_path_factory)
        assert type(encoder) is Encoder
    assert isinstance(loaded("llama", "torch", "float32", tmp_path_factory).backend, TorchBackend)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"backend": "tensorrt"}, "unknown backend 'tensorrt'; choose one of: torch, onnx, openvino"),
    ({"backend": "onnx", "compile": True}, "compile apply to the torch backend, not backend='onnx'"),
    ({"backend": "openvino", "dtype": "float16"}, "dtype apply to the torch backend"),  # bf16 is OpenVINO's own
    ({"backend": "onnx", "dtype": "bfloat16"}, "ONNX Runtime has no bf16 matmul kernels on CPU"),
    ({"quantize": "int4"}, "unknown quantize 'int4'; choose one of: int8"),
    ({"threads": 0}, "threads must be >= 1, got 0"),
    pytest.param({"device": "cuda:0"}, "device 'cuda:0'", marks=pytest.mark.allow_skip(
        reason="the no-CUDA error cannot be raised on a machine that has CUDA")),
])
def test_bad_backend_arguments_are_one_line_errors(kwargs, message, tmp_path_factory):
    if kwargs.get("device", "").startswith("cuda") and __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(Decoder2VecError, match=message.replace("(", r"\(")):
        Encoder.from_pretrained(folder("llama", tmp_path_factory), **kwargs)


def test_an_exported_backend_cannot_be_saved_or_compiled(tmp_path, tmp_path_factory):
    encoder = loaded("llama", "onnx", "float32", tmp_path_factory)
    with pytest.raises(Decoder2VecError, match="needs the torch backend; this Encoder runs 'onnx'"):
        encoder.save_pretrained(tmp_path / "x")
    with pytest.raises(Decoder2VecError, match="compile\\(\\) applies to the torch backend"):
        encoder.compile()
    with pytest.raises(Decoder2VecError, match="packed .unpadded. batches run on the torch backend only"):
        encoder.encode(TEXTS, unpadded=True)


def test_a_killed_export_leaves_no_artifact(tmp_path):
    target = tmp_path / "backends" / "key"
    with pytest.raises(RuntimeError), artifact_cache.building(target) as tmp:
        (tmp / "model.onnx").write_text("half")
        raise RuntimeError("killed")
    assert not target.exists() and not list(tmp_path.joinpath("backends").iterdir())
