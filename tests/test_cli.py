"""`decoder2vec encode` and `decoder2vec info`, run in-process through `cli.main`."""

import json

import numpy as np
import pandas as pd
import pytest
from tiny import tiny_encoder

from decoder2vec import Encoder
from decoder2vec.cli import main

TEXTS = ["The quick brown fox jumps over the lazy dog.", "A cat.", "Paris is the capital of France, of course."]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return str(tiny_encoder("qwen2").save_pretrained(tmp_path_factory.mktemp("models") / "tiny"))


def _write_inputs(folder, texts):
    txt = folder / "in.txt"
    txt.write_text("\n".join(texts) + "\n")
    jsonl = folder / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "sentence": t}) + "\n" for i, t in enumerate(texts)))
    csv = folder / "in.csv"
    pd.DataFrame({"text": texts, "label": range(len(texts))}).to_csv(csv, index=False)
    return txt, jsonl, csv


def _read(path):
    if path.suffix == ".npy":
        return np.load(path)
    frame = pd.read_parquet(path)
    return np.stack(frame["embedding"].to_numpy()), frame["sentence"].tolist(), frame["id"].tolist()


def test_encode_formats(tiny_folder, tmp_path, capsys):
    txt, jsonl, csv = _write_inputs(tmp_path, TEXTS)
    expected = Encoder.from_pretrained(tiny_folder, device="cpu").encode(
        TEXTS, instruction="Find:", normalize_embeddings=True)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n".join(TEXTS[:1] + [""] + TEXTS[1:]) + "\n")
    argv = ["encode", "--model", tiny_folder, "--input", str(blank), "--output", str(tmp_path / "blank.npy")]
    assert main(argv) == 2
    assert f"{blank}:2: empty text (id 1)" in capsys.readouterr().err
    for source, extra, output in [
        (blank, ["--on-empty", "skip"], tmp_path / "a.npy"),
        (jsonl, ["--text-column", "sentence", "--carry", "sentence"], tmp_path / "b.parquet"),
        (csv, [], tmp_path / "c.npy"),
    ]:
        argv = ["encode", "--model", tiny_folder, "--input", str(source), "--output", str(output),
                "--instruction", "Find:", "--normalize-embeddings", "--device", "cpu", *extra]
        assert main(argv) == 0
        got = _read(output)
        if output.suffix == ".parquet":
            got, texts, ids = got
            assert texts == TEXTS and ids == [0, 1, 2]  # row i is input i
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert f"wrote 3 vectors of dimension 32 (float32) to {tmp_path / 'c.npy'}" in capsys.readouterr().out


def test_encode_options(tiny_folder, tmp_path):
    txt, _, _ = _write_inputs(tmp_path, TEXTS)
    out = tmp_path / "v.npy"
    argv = ["encode", "--model", tiny_folder, "--input", str(txt), "--output", str(out), "--device", "cpu"]
    assert main([*argv, "--truncate-dim", "8", "--precision", "ubinary"]) == 0
    assert np.load(out).shape == (3, 1) and np.load(out).dtype == np.uint8
    # The first run's file is decoder2vec's own: replaced with --overwrite (refused without, issue 23.5).
    assert main([*argv, "--pooling", "last_token", "--no-bidirectional", "--overwrite"]) == 0
    causal = Encoder.from_pretrained(tiny_folder, pooling="last_token", bidirectional=False, device="cpu")
    np.testing.assert_allclose(np.load(out), causal.encode(TEXTS), atol=1e-5)


def test_encode_quantize_and_compile_flags(tiny_folder, tmp_path):
    txt, _, _ = _write_inputs(tmp_path, TEXTS)
    out = tmp_path / "v.npy"
    argv = ["encode", "--model", tiny_folder, "--input", str(txt), "--output", str(out), "--device", "cpu"]
    assert main([*argv, "--quantize", "int8", "--compile"]) == 0
    int8 = Encoder.from_pretrained(tiny_folder, device="cpu", quantize="int8")
    np.testing.assert_allclose(np.load(out), int8.encode(TEXTS), atol=1e-4)


@pytest.mark.parametrize(("content", "name", "extra", "message"), [
    ("text\n", "in.csv", ["--text-column", "body"], "has no column 'body' (columns: text); name it with --text-column"),
    ('{"sentence": "a"}\n', "in.jsonl", [], "has no column 'text' (columns: sentence)"),
    ("a\n", "in.tsv", [], "unsupported input type '.tsv'"),
    (None, "absent.txt", [], "input file not found"),
    ("a\n", "in.txt", ["--output-override", "v.csv"], "unsupported output type"),
])
def test_encode_errors(tiny_folder, tmp_path, capsys, content, name, extra, message):
    source = tmp_path / name
    if content is not None:
        source.write_text(content)
    output = str(tmp_path / "v.npy")
    if extra[:1] == ["--output-override"]:
        output, extra = str(tmp_path / extra[1]), []
    code = main(["encode", "--model", tiny_folder, "--input", str(source), "--output", output, *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("decoder2vec encode: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_encode_missing_model(tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("a\n")
    assert main(["encode", "--model", "./nowhere", "--input", str(source), "--output", str(tmp_path / "v.npy")]) == 2
    assert "model path not found: './nowhere'" in capsys.readouterr().err


def test_info(tiny_folder, capsys):
    assert main(["info", tiny_folder]) == 0
    out = capsys.readouterr().out
    for line in ("family", "qwen2", "parameters", "hidden_size", "32", "max_length", "bidirectional", "True"):
        assert line in out
    assert main(["info", tiny_folder, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "qwen2" and info["hidden_size"] == 32 and info["bidirectional"] is True
    assert info["parameters"] > 0 and info["max_length"] == 128


@pytest.mark.real
def test_encode_default_model(smollm2, tmp_path):
    """The README's command on the real packaged model: same vectors as the Python API."""
    texts = ["The weather was cold and windy.", "Quantum computers use qubits.", "Copenhagen is in Denmark."]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n")
    out = tmp_path / "vectors.npy"
    assert main(["encode", "--input", str(source), "--output", str(out), "--normalize"]) == 0
    np.testing.assert_allclose(np.load(out), smollm2.encode(texts, normalize_embeddings=True), atol=1e-5)
