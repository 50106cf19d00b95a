"""Streaming, resumable corpus encoding (decoder2vec.corpus) and `decoder2vec encode` on a tiny model."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny import CORPUS, tiny_encoder

from decoder2vec import Encoder
from decoder2vec.cli import main
from decoder2vec.corpus import MANIFEST, encode_corpus, ids_file, read_output
from decoder2vec.model.precision import quantize_embeddings

TEXTS = [f"{text} ({i})" for i, text in enumerate(CORPUS[:6] * 3)]  # 18 distinct texts


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(tiny_encoder("qwen2").save_pretrained(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(scope="module")
def encoder(folder):
    return Encoder.from_pretrained(folder, device="cpu")


def _inputs(tmp_path):
    """TEXTS spread over one file of each format, in this (sorted) order."""
    (tmp_path / "a.txt").write_text("\n".join(TEXTS[:5]) + "\n")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(TEXTS[5:9])))
    pd.DataFrame({"text": TEXTS[9:14], "n": range(4, 9)}).to_csv(tmp_path / "c.csv", index=False)
    pq.write_table(pa.table({"text": TEXTS[14:], "n": list(range(9, 13))}), tmp_path / "d.parquet")
    return [str(tmp_path / name) for name in ("a.txt", "b.jsonl", "c.csv", "d.parquet")]


def _error_line(err) -> str:
    """The error: one line, after any progress bars (\r-separated), with no traceback."""
    err = err if isinstance(err, str) else err.readouterr().err
    assert "Traceback" not in err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("decoder2vec encode: error: "), err
    return last


def _vectors(table):
    return np.stack(table["embedding"].to_numpy(zero_copy_only=False))


def test_streamed_shards_equal_one_shot(encoder, tmp_path):
    """Four formats through a glob, 4-row shards: the union of shards is one encode() call."""
    _inputs(tmp_path)
    out = tmp_path / "vectors"
    summary = encode_corpus(encoder, str(tmp_path / "[abcd].*"), out, shard_rows=4, instruction="Find:",
                            normalize_embeddings=True)
    table = read_output(out)
    assert table["id"].to_pylist() == list(range(len(TEXTS)))
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    expected = encoder.encode(TEXTS, instruction="Find:", normalize_embeddings=True)
    np.testing.assert_allclose(_vectors(table), expected, atol=1e-5)
    manifest = json.loads((out / MANIFEST).read_text())
    # Shards never span files: 5 txt rows -> 4 + 1, 4 jsonl, 5 csv -> 4 + 1, 4 parquet.
    assert [s["end_row"] for s in manifest["shards"]] == [4, 5, 9, 13, 14, 18]
    assert manifest["complete"] and manifest["rows"] == 18 and manifest["skipped_ids"] == []
    assert manifest["tokens"] == summary.tokens == sum(map(len, encoder.tokenize(TEXTS, ["Find:"] * 18)[0]))
    assert summary.line().startswith(f"encoded 18 rows, {summary.tokens} tokens in ")


def test_id_column_carry_and_precision(encoder, tmp_path):
    files = _inputs(tmp_path)
    out = tmp_path / "v.parquet"
    encode_corpus(encoder, files[1:], out, id_column="n", carry=["text"], precision="ubinary")
    table = pq.read_table(out)
    assert table.column_names == ["id", "embedding", "text"]
    assert table["id"].to_pylist() == list(range(13)) and table["text"].to_pylist() == TEXTS[5:]
    assert table.schema.field("embedding").type == pa.list_(pa.uint8(), 4)
    np.testing.assert_array_equal(_vectors(table), encoder.encode(TEXTS[5:], precision="ubinary"))


def test_int8_shards_share_the_first_shards_range(encoder, tmp_path):
    files = _inputs(tmp_path)
    out = tmp_path / "v"
    encode_corpus(encoder, files[0], out, shard_rows=3, precision="int8")
    ranges = np.asarray(json.loads((out / MANIFEST).read_text())["calibration"], np.float32)
    floats = encoder.encode(TEXTS[:5])
    np.testing.assert_allclose(ranges, np.vstack([floats[:3].min(0), floats[:3].max(0)]), atol=1e-6)
    expected = quantize_embeddings(floats, "int8", ranges).astype(int)
    # float32 rounding between a 3-row and a 5-row encode may move a value across a level boundary.
    assert np.abs(_vectors(read_output(out)).astype(int) - expected).max() <= 1


def test_npy_rows_are_input_lines(folder, encoder, tmp_path, capsys):
    """A blank line is an error naming it; with --on-empty skip the kept rows' ids are written."""
    source = tmp_path / "in.txt"
    source.write_text("first text\n\n  \nfourth text\n")
    out = tmp_path / "v.npy"
    argv = ["encode", "--model", folder, "--input", str(source), "--output", str(out), "--device", "cpu"]
    assert main(argv) == 2
    assert _error_line(capsys).startswith(f"decoder2vec encode: error: {source}:2: empty text (id 1); pass --on-empty skip")
    assert not out.exists()
    assert main([*argv, "--on-empty", "skip"]) == 0
    assert "skipped 2 empty rows (ids 1, 2)" in capsys.readouterr().out
    assert json.loads(ids_file(out).read_text()) == [0, 3]
    np.testing.assert_allclose(np.load(out), encoder.encode(["first text", "fourth text"]), atol=1e-5)


def test_parquet_output_has_ids_and_skips_are_listed(folder, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text('text,doc\nhello there,a\n,b\n"multi\nline",c\n')
    out = tmp_path / "shards"
    argv = ["encode", "--model", folder, "--input", str(source), "--output", str(out), "--device", "cpu",
            "--id-column", "doc", "--on-empty", "skip"]
    assert main(argv) == 0
    assert read_output(out)["id"].to_pylist() == ["a", "c"]
    assert json.loads((out / MANIFEST).read_text())["skipped_ids"] == ["b"]
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"wrote 2 vectors of dimension 32 (float32) to {out}"
    assert printed[1].startswith("skipped 1 empty rows (ids b)") and printed[-1].startswith("encoded 2 rows")


@pytest.mark.parametrize(("name", "content", "extra", "message"), [
    ("in.jsonl", b'{"text": "a"}\n{"text": "b"\n', [], "in.jsonl:2: not a JSON object (Expecting ',' delimiter at column 13)"),
    ("in.jsonl", b'{"text": "a"}\n{"text": 5}\n', [], "in.jsonl:2: 'text' is int, not a string"),
    ("in.jsonl", b'{"text": "a"}\n{"body": "b"}\n', [], "in.jsonl:2 has no column 'text' (columns: body)"),
    ("in.jsonl", b'{"body": "b"}\n', [], "in.jsonl:1 has no column 'text' (columns: body); name it with --text-column"),
    ("in.parquet", None, ["--id-column", "doc"], "in.parquet has no id column 'doc' (columns: text)"),
    ("in.jsonl", b'{"text": null}\n', [], "in.jsonl:1: null text (id 0)"),
    ("in.jsonl", b'{"text": "a"}\n{"text": "b \\ud800 c"}\n', [], "in.jsonl:2: 'text' holds a lone surrogate ('\\ud800' at character 3)"),
    ("in.txt", "caf\u00e9\nna\u00efve\n".encode("latin-1"), [], "in.txt:1: not UTF-8 (byte 0xe9 at column 4)"),
    ("in.csv", "text\nok\ncaf\u00e9\n".encode("latin-1"), [], "in.csv row 2: column 'text' is not UTF-8"),
    ("in.csv", b"body\nx\n", [], "has no column 'text' (columns: body); name it with --text-column"),
    ("in.tsv", b"a\n", [], "unsupported input type '.tsv'"),
    ("in.txt", b"a\n", ["--batch-size", "x"], "--batch-size must be an integer, got 'x'"),
    ("in.txt", b"a\n", ["--truncate-dim", "2.5"], "--truncate-dim must be an integer, got '2.5'"),
    ("in.txt", b"a\n", ["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    ("in.txt", b"a\n", ["--output", "OUTDIR.npy"], "is a folder; name a .npy file"),
    ("in.txt", b"a\n", ["--output", "AFILE/v.npy"], "is a file, not a folder"),
    ("in.txt", b"a\n", ["--output", "USERDIR"], "exists and is not a decoder2vec output"),
    ("in.txt", b"a\n", ["--output", "v.csv"], "unsupported output type '.csv'"),
])
def test_bad_input_is_one_line(folder, tmp_path, capsys, monkeypatch, name, content, extra, message):
    """Every bad input or output is one line naming it, found before the model is loaded where it can be."""
    if content is None:
        pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / name)
    else:
        (tmp_path / name).write_bytes(content)
    (tmp_path / "OUTDIR.npy").mkdir()
    (tmp_path / "AFILE").write_text("x")
    (tmp_path / "USERDIR").mkdir()
    (tmp_path / "USERDIR" / "notes.md").write_text("mine")
    monkeypatch.chdir(tmp_path)
    output = extra[1] if extra[:1] == ["--output"] else "v.npy"
    extra = [] if extra[:1] == ["--output"] else extra
    code = main(["encode", "--model", folder, "--input", name, "--output", output, "--device", "cpu", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in _error_line(err)
    if not any(found_later in message for found_later in ("in.jsonl:2", "null text", "not UTF-8")):
        assert len(err.splitlines()) == 1, "found before the model load, so nothing else is printed"
    assert (tmp_path / "USERDIR" / "notes.md").read_text() == "mine"


def test_resume_refuses_other_settings(folder, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    argv = ["encode", "--model", folder, "--input", str(source), "--output", str(tmp_path / "v"), "--device", "cpu"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--instruction", "Find:", "--normalize-embeddings"]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings (instruction: None -> 'Find:'; normalize_embeddings: False -> True)" in err
    assert len(err.splitlines()) == 1, "refused before the model load"
    # Keys known only once the model is loaded are compared then (here: the folder's pooling).
    assert main([*argv, "--pooling", "last_token"]) == 2
    assert "(pooling: 'mean' -> 'last_token')" in _error_line(capsys)
    # The same command again: already complete, nothing re-encoded.
    shard = tmp_path / "v" / "shard-000000.parquet"
    before = shard.stat().st_mtime_ns
    assert main([*argv, "--batch-size", "4"]) == 0
    assert shard.stat().st_mtime_ns == before
    assert "encoded 18 rows" in capsys.readouterr().out


def test_causal_folder_stays_causal(tmp_path, capsys):
    """A saved causal Encoder encodes causally unless --bidirectional says otherwise (issue 14.6)."""
    causal = str(tiny_encoder("qwen2", bidirectional=False).save_pretrained(tmp_path / "causal"))
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:4]) + "\n")
    argv = ["encode", "--model", causal, "--input", str(source), "--device", "cpu"]
    assert main([*argv, "--output", str(tmp_path / "a.npy")]) == 0
    assert main([*argv, "--output", str(tmp_path / "b.npy"), "--bidirectional"]) == 0
    as_saved = Encoder.from_pretrained(causal, device="cpu")
    assert not as_saved.is_bidirectional()
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), as_saved.encode(TEXTS[:4]), atol=1e-5)
    both_ways = Encoder.from_pretrained(causal, bidirectional=True, device="cpu").encode(TEXTS[:4])
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), both_ways, atol=1e-5)
    assert not np.allclose(both_ways, as_saved.encode(TEXTS[:4]), atol=1e-3)


# The command in a fresh interpreter, each encode call 0.2 s slower: on an idle machine the whole
# run would otherwise finish before the parent sees its third shard and kills it. A fresh process,
# not a fork: a forked child of a process whose torch thread pools already ran can crash (SIGSEGV).
SLOW_MAIN = """
import sys, time
from decoder2vec import Encoder
from decoder2vec.cli import main
real = Encoder.encode
def slow(self, *args, **kwargs):
    time.sleep(0.2)
    return real(self, *args, **kwargs)
Encoder.encode = slow
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_then_same_command_resumes(folder, encoder, tmp_path):
    """Kill -9 mid-run, run the same command: every id once, vectors equal to one encode() call."""
    texts = [f"{CORPUS[i % 6]} number {i}" for i in range(2000)]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n")
    out = tmp_path / "vectors"
    argv = ["encode", "--model", folder, "--input", str(source), "--output", str(out), "--device", "cpu",
            "--shard-rows", "50"]
    # SIGKILL is a real kill -9.
    proc = subprocess.Popen([sys.executable, "-c", SLOW_MAIN, *argv])
    deadline = time.time() + 180
    shards = 0
    while shards < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
        try:
            shards = len(json.loads((out / MANIFEST).read_text())["shards"])
        except (OSError, ValueError):
            pass
    assert proc.poll() is None, f"the run ended before it could be killed (exit code {proc.returncode})"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = json.loads((out / MANIFEST).read_text())
    assert not killed_at["complete"] and 3 <= len(killed_at["shards"]) < 40
    # What a kill during a shard write leaves behind (a dead process's partial file) is cleaned up.
    (out / ".shard-000039.parquet.decoder2vec-partial-999999").write_bytes(b"half")
    assert main(argv) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] and [s["first_row"] for s in manifest["shards"]] == list(range(0, 2000, 50))
    table = read_output(out)
    assert table["id"].to_pylist() == list(range(2000))
    np.testing.assert_allclose(_vectors(table), encoder.encode(texts), atol=1e-5)
    assert not [p.name for p in out.iterdir() if "partial" in p.name]
