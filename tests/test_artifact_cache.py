"""The cache of exported artifacts (issue 23, cases 14, 15 and 27): a truncated or emptied cached
graph is exported again (and the log names its folder), a folder's own broken export is a one-line
error, a cache that cannot be written is a one-line error naming it and DECODER2VEC_CACHE, and
cached artifacts follow the umask."""

import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from tiny import CORPUS, tiny_encoder

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.backends.cache import RECORD
from decoder2vec.folder.onnx_export import ONNX_FILE, export_onnx

TEXTS = CORPUS[:4]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("DECODER2VEC_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    encoder = tiny_encoder("llama")
    folder = encoder.save_pretrained(tmp_path_factory.mktemp("enc") / "encoder")
    return folder, encoder.encode(TEXTS, normalize_embeddings=True)


def _artifacts(cache: Path, name: str) -> list[Path]:
    return sorted(cache.glob(f"backends/*/{name}"))


@pytest.mark.parametrize("damage", ["empty", "half", "flipped"])
def test_a_broken_cached_graph_is_exported_again(saved, cache, caplog, damage):
    folder, expected = saved
    Encoder.from_pretrained(folder, backend="onnx")
    (graph,) = _artifacts(cache, "model.onnx")
    data = graph.read_bytes()
    broken = {"empty": b"", "half": data[:len(data) // 2],
              "flipped": data[:-100] + bytes(b ^ 0xFF for b in data[-100:])}[damage]
    graph.write_bytes(broken)
    with caplog.at_level(logging.WARNING, logger="decoder2vec.backends.cache"):
        again = Encoder.from_pretrained(folder, backend="onnx")
    np.testing.assert_allclose(again.encode(TEXTS, normalize_embeddings=True), expected, atol=1e-5)
    assert graph.read_bytes() == data  # rebuilt in place, the same graph
    assert f"the cached export in {graph.parent} is broken" in caplog.text
    assert not [p for p in graph.parent.parent.iterdir() if p.name.startswith(".")]  # nothing left aside


def test_a_cache_entry_without_a_record_is_exported_again(saved, cache):
    """Entries from before the record cannot be checked: they are rebuilt once, then recorded."""
    folder, expected = saved
    Encoder.from_pretrained(folder, backend="openvino")
    (ir,) = _artifacts(cache, "model.xml")
    (ir.parent / RECORD).unlink()
    ir.with_suffix(".bin").write_bytes(b"")
    again = Encoder.from_pretrained(folder, backend="openvino")
    np.testing.assert_allclose(again.encode(TEXTS, normalize_embeddings=True), expected, atol=1e-5)
    assert (ir.parent / RECORD).is_file()


def test_a_folders_own_broken_graph_is_a_one_line_error(saved, tmp_path, cache):
    folder, _ = saved
    out = export_onnx(Encoder.from_pretrained(folder), tmp_path / "onnx")
    (out / ONNX_FILE).write_bytes(b"")
    with pytest.raises(Decoder2VecError, match=rf"the exported model in {out / 'onnx'} is broken: model\.onnx is "
                                               r"0 bytes, \d+ when it was written"):
        Encoder.from_pretrained(out, backend="onnx")


def test_an_unwritable_cache_is_a_one_line_error_naming_it(saved, tmp_path, monkeypatch):
    folder, _ = saved
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses everyone
        root = Path("/sys/fs")
    else:
        root = tmp_path / "readonly"
        root.mkdir()
        root.chmod(0o555)
    monkeypatch.setenv("DECODER2VEC_CACHE", str(root))
    with pytest.raises(Decoder2VecError, match=rf"cannot write the exported model into {root / 'backends'}: .*; "
                                               "set DECODER2VEC_CACHE to a writable folder"):
        Encoder.from_pretrained(folder, backend="onnx")


def test_a_cache_folder_that_cannot_be_created_is_a_one_line_error(saved, tmp_path, monkeypatch):
    folder, _ = saved
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DECODER2VEC_CACHE", str(blocker / "cache"))
    with pytest.raises(Decoder2VecError, match=rf"cannot create decoder2vec's cache folder {blocker / 'cache'}: "
                                               ".*set DECODER2VEC_CACHE to a writable folder"):
        Encoder.from_pretrained(folder, backend="onnx")


def test_cached_artifacts_and_saved_folders_follow_the_umask(saved, tmp_path, cache):
    folder, _ = saved
    old = os.umask(0o022)
    try:
        Encoder.from_pretrained(folder, backend="openvino")
        encoder = Encoder.from_pretrained(folder)
        out = encoder.save_pretrained(tmp_path / "saved")
        onnx_out = export_onnx(encoder, tmp_path / "onnx")
    finally:
        os.umask(old)
    checked = 0
    for top in (cache / "backends", out, onnx_out):
        for path in [top, *top.rglob("*")]:
            if path.parent.name == "compiled":  # OpenVINO's own compile cache, not written by decoder2vec
                continue
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o755 if path.is_dir() else 0o644), f"{path}: {oct(mode)}"
            checked += 1
    assert (out / "model.safetensors").is_file() and checked > 20
