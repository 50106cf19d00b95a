"""Issue 23, the corpus-encode side: resume never mixes two models, outputs never overwrite a
user's file, every reader strips a BOM and splits \\r lines, ids are unique, one huge line costs a
bounded read and max_length tokens, a full disk and bad Ray input are one line, and the output
folder reads with pandas/pyarrow (Ray Data: tests/test_distributed.py)."""

import errno
import json
import os
import shutil
import tracemalloc

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import ray
from ray.exceptions import RayTaskError
from tiny import CORPUS, tiny_model, tiny_tokenizer

import decoder2vec.corpus.reading as reading
from decoder2vec import Encoder, EncoderConfig
from decoder2vec.cli import main
from decoder2vec.corpus import MANIFEST, encode_corpus, read_chunks, read_output, scan_inputs, text_limit
from decoder2vec.corpus.ray_engine import _user_error
from decoder2vec.errors import Decoder2VecError

TEXTS = [f"{CORPUS[i % 6]} number {i}" for i in range(12)]


def _save(path, seed=0):
    Encoder(tiny_model("qwen2", seed=seed), tiny_tokenizer(), EncoderConfig(max_length=128)).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def encoder(folder):
    return Encoder.from_pretrained(folder, device="cpu")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("decoder2vec encode: error: "), err
    return last


def _vectors(table):
    return np.stack(table["embedding"].to_numpy(zero_copy_only=False))


def _texts(path, **kwargs):
    return [t for chunk in read_chunks([path], **kwargs) for t in chunk.texts]


# ----------------------------------------------------------------------------- 2: fingerprint
def test_resume_refuses_a_model_replaced_at_the_same_path(tmp_path, capsys, monkeypatch):
    """Stopped after 1 of 3 shards; the model folder is replaced by another at the same path: the
    resume is refused naming the fingerprint; the first model again (its files re-written, so
    other times and inodes) resumes, and every vector is that model's."""
    model = _save(tmp_path / "model", seed=0)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "v"
    argv = ["encode", "--model", model, "--input", str(source), "--output", str(out), "--device", "cpu",
            "--shard-rows", "4"]
    real = pq.write_table
    calls = []

    def full_after_one(table, where, *args, **kwargs):
        calls.append(where)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", full_after_one)
    assert main(argv) == 2
    monkeypatch.setattr(pq, "write_table", real)
    assert "No space left on device" in _error_line(capsys)
    manifest = json.loads((out / MANIFEST).read_text())
    assert len(manifest["shards"]) == 1 and manifest["settings"]["model_fingerprint"].startswith("sha256:")

    shutil.rmtree(model)
    _save(model, seed=1)  # another model, the same path, the same config
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "model_fingerprint: 'sha256:" in line and "a model replaced at the same path?" in line
    assert len(json.loads((out / MANIFEST).read_text())["shards"]) == 1

    shutil.rmtree(model)
    _save(model, seed=0)  # the first model's files again: the same content, new mtimes
    assert main(argv) == 0
    table = read_output(out)
    assert table["id"].to_pylist() == list(range(12))
    expected = Encoder.from_pretrained(model, device="cpu").encode(TEXTS)
    np.testing.assert_allclose(_vectors(table), expected, atol=1e-5)


def test_python_resume_records_the_encoders_weights(tmp_path):
    """An Encoder built in memory (no folder) is fingerprinted by its weights."""
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:4]) + "\n")
    first = Encoder(tiny_model("qwen2", seed=0), tiny_tokenizer(), EncoderConfig(max_length=128))
    encode_corpus(first, str(source), tmp_path / "v")
    other = Encoder(tiny_model("qwen2", seed=1), tiny_tokenizer(), EncoderConfig(max_length=128))
    with pytest.raises(Decoder2VecError, match="model_fingerprint: 'weights-sha256:"):
        encode_corpus(other, str(source), tmp_path / "v")
    same = Encoder(tiny_model("qwen2", seed=0), tiny_tokenizer(), EncoderConfig(max_length=128))
    assert encode_corpus(same, str(source), tmp_path / "v").rows == 4


# ----------------------------------------------------------------------------- 5: overwrite
@pytest.mark.parametrize("name", ["v.npy", "v.parquet"])
def test_an_output_file_is_never_a_users_file(folder, tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("\n".join(TEXTS[:3]) + "\n")
    argv = ["encode", "--model", folder, "--input", "in.txt", "--output", name, "--device", "cpu"]
    (tmp_path / name).write_text("the user's own file")
    assert main(argv) == 2
    assert "exists and was not written by decoder2vec" in _error_line(capsys)
    assert main([*argv, "--overwrite"]) == 2
    assert "never replaces such a file" in _error_line(capsys)
    assert (tmp_path / name).read_text() == "the user's own file"

    (tmp_path / name).unlink()
    assert main(argv) == 0
    capsys.readouterr()
    written = (tmp_path / name).read_bytes()
    assert main(argv) == 2, "decoder2vec's own output is replaced only with --overwrite"
    assert "pass --overwrite" in _error_line(capsys)
    assert main([*argv, "--overwrite"]) == 0
    assert (tmp_path / name).read_bytes() == written
    with open(tmp_path / name, "ab") as f:
        f.write(b"edited")  # changed since decoder2vec wrote it: the user's now
    assert main([*argv, "--overwrite"]) == 2
    assert "changed since" in _error_line(capsys)


def test_overwrite_applies_to_files_not_shard_folders(folder, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a\n")
    assert main(["encode", "--model", folder, "--input", str(tmp_path / "in.txt"), "--output",
                 str(tmp_path / "v/"), "--overwrite"]) == 2
    assert "resumes an earlier run instead" in _error_line(capsys)


# ----------------------------------------------------------------------------- 6, 7: BOM and \r
def test_a_bom_is_not_text_in_any_format(folder, encoder, tmp_path, capsys):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "a.txt").write_bytes(bom + "\n".join(TEXTS[:2]).encode() + b"\n")
    (tmp_path / "b.jsonl").write_bytes(bom + "".join(json.dumps({"text": t}) + "\n" for t in TEXTS[2:4]).encode())
    (tmp_path / "c.csv").write_bytes(bom + pd.DataFrame({"text": TEXTS[4:6]}).to_csv(index=False).encode())
    for name, texts in (("a.txt", TEXTS[:2]), ("b.jsonl", TEXTS[2:4]), ("c.csv", TEXTS[4:6])):
        assert _texts(tmp_path / name) == texts
    out = tmp_path / "v.npy"
    inputs = [str(tmp_path / n) for n in ("a.txt", "b.jsonl", "c.csv")]
    assert main(["encode", "--model", folder, "--input", *inputs, "--output", str(out), "--device", "cpu"]) == 0
    np.testing.assert_allclose(np.load(out), encoder.encode(TEXTS[:6]), atol=1e-5)


@pytest.mark.parametrize("block", [3, 1 << 18])  # 3 bytes: \r\n pairs fall across block ends
def test_every_line_end_splits_lines(tmp_path, monkeypatch, block):
    monkeypatch.setattr(reading, "READ_BYTES", block)
    path = tmp_path / "in.txt"
    path.write_bytes(b"mac one\rmac two\rwin\r\nunix\n\r\nlast")
    expected = ["mac one", "mac two", "win", "unix", "", "last"]
    assert _texts(path) == expected
    assert scan_inputs([path]) == [0, 6] and reading.count_rows(path) == 6
    (tmp_path / "in.jsonl").write_bytes(b'{"text": "a"}\r{"text": "b"}\r\n{"text": "c"}\r')
    assert _texts(tmp_path / "in.jsonl") == ["a", "b", "c"]
    assert scan_inputs([tmp_path / "in.jsonl"]) == [0, 3] and reading.count_rows(tmp_path / "in.jsonl") == 3


def test_not_utf8_is_named_by_line_and_column_in_any_block(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "READ_BYTES", 4)
    path = tmp_path / "in.txt"
    path.write_bytes(b"ok\rcaf\xc3\xa9 \xff\n")  # line 2, byte 7 (the 2-byte \xc3\xa9 counts 2)
    with pytest.raises(Decoder2VecError, match=r"in.txt:2: not UTF-8 \(byte 0xff at column 7\)"):
        _texts(path)


# ----------------------------------------------------------------------------- 9: unique ids
def test_a_repeated_id_is_refused_naming_its_line(folder, tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"id": i % 2, "text": t}) + "\n" for i, t in enumerate(TEXTS[:4])))
    argv = ["encode", "--model", folder, "--input", str(tmp_path / "a.jsonl"), "--id-column", "id", "--device", "cpu"]
    assert main([*argv, "--output", str(tmp_path / "v")]) == 2
    line = _error_line(capsys)
    assert f"{tmp_path / 'a.jsonl'}:3: id 0 repeats the id of {tmp_path / 'a.jsonl'}:1" in line
    assert not (tmp_path / "v").exists(), "refused before anything is written"
    # Across files, in a .csv's words; "1" and 1 are different ids.
    (tmp_path / "b.jsonl").write_text(json.dumps({"id": "1", "text": "x"}) + "\n" + json.dumps({"id": 7, "text": "y"}) + "\n")
    pd.DataFrame({"id": [5, 7], "text": ["p", "q"]}).to_csv(tmp_path / "c.csv", index=False)
    assert scan_inputs([tmp_path / "b.jsonl"], id_column="id") == [0, 2]
    with pytest.raises(Decoder2VecError, match=r"c.csv row 2: id 7 repeats the id of .*b.jsonl:2"):
        scan_inputs([tmp_path / "b.jsonl", tmp_path / "c.csv"], id_column="id")


# ----------------------------------------------------------------------------- 10: one huge line
def test_a_huge_line_is_read_in_bounded_memory(tmp_path):
    """A 32 MiB line: the reader holds a block and the kept prefix, not the line (Python's own
    allocations, which is where reading a line goes)."""
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        for _ in range(32):
            f.write(b"words " * 174763)  # 1 MiB
        f.write(b"\nsecond line\n")
    tracemalloc.start()
    try:
        texts = _texts(path, max_chars=1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [len(t) for t in texts] == [1000, 11] and texts[0].startswith("words words")
    assert peak < 4 * 2**20, f"reading a 32 MiB line peaked at {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("unit", ["grammar and words ", "abcdefghij"])  # words, and one 1 MB "word"
def test_a_huge_line_tokenizes_a_prefix_and_gives_the_same_vector(encoder, tmp_path, monkeypatch, unit):
    huge = (unit * (10**6 // len(unit)))
    path = tmp_path / "in.txt"
    path.write_text(f"{TEXTS[0]}\n{huge}\n{TEXTS[1]}\n")
    with pytest.warns(UserWarning, match="longer than max_length"):
        expected = encoder.encode([TEXTS[0], huge, TEXTS[1]])  # the whole text, tokenized whole
    tokenizer_class = type(encoder.tokenizer)
    real, seen = tokenizer_class.__call__, []

    def spy(self, text=None, *args, **kwargs):
        seen.extend(len(t) for t in ([text] if isinstance(text, str) else text or []))
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(tokenizer_class, "__call__", spy)
    with pytest.warns(UserWarning, match="longer than max_length"):
        encode_corpus(encoder, str(path), tmp_path / "v.npy")
    assert max(seen) <= text_limit(encoder.tokenizer, encoder.max_length) < len(huge) / 10
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), expected, atol=1e-5)


# ----------------------------------------------------------------------------- 13: disk full
def test_a_full_disk_is_one_line_for_npy_and_leaves_nothing(folder, tmp_path, capsys, monkeypatch):
    (tmp_path / "in.txt").write_text("\n".join(TEXTS[:3]) + "\n")

    def short_write(file, array, *args, **kwargs):  # what numpy raises when the disk fills mid-write
        raise OSError(f"{array.nbytes} requested and 0 written")

    monkeypatch.setattr(np, "save", short_write)
    assert main(["encode", "--model", folder, "--input", str(tmp_path / "in.txt"), "--output",
                 str(tmp_path / "v.npy"), "--device", "cpu"]) == 2
    line = _error_line(capsys)
    assert f"cannot write {tmp_path / 'v.npy'}: " in line and "(the disk is full)" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_a_full_disk_keeps_complete_shards_and_resumes(folder, encoder, tmp_path, capsys, monkeypatch):
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    argv = ["encode", "--model", folder, "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "v"),
            "--device", "cpu", "--shard-rows", "5"]
    real, calls = pq.write_table, []

    def full_on_second(table, where, *args, **kwargs):
        calls.append(where)
        if len(calls) == 2:
            raise pa.lib.ArrowIOError(errno.ENOSPC, "No space left on device")
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", full_on_second)
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "shard-000001.parquet: No space left on device (the disk is full)" in line
    assert "the 1 complete shards are kept" in line and "go on from input row 5" in line
    assert not [p for p in (tmp_path / "v").iterdir() if "partial" in p.name]
    assert main(argv) == 0
    table = read_output(tmp_path / "v")
    assert table["id"].to_pylist() == list(range(12))
    np.testing.assert_allclose(_vectors(table), encoder.encode(TEXTS), atol=1e-5)


# ----------------------------------------------------------------------------- 20: Ray
def test_ray_bad_input_is_one_line_before_ray_starts(folder, tmp_path, capsys):
    (tmp_path / "in.txt").write_bytes(b"hello\nworld\n\xff bad\n")
    assert not ray.is_initialized()
    assert main(["encode", "--model", folder, "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "v"),
                 "--engine", "ray", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"decoder2vec encode: error: {tmp_path / 'in.txt'}:3: not UTF-8 (byte 0xff at column 1); convert the file, "
        "e.g. iconv -f latin1 -t utf-8"]
    assert not ray.is_initialized()


def test_a_ray_task_error_unwraps_to_its_message():
    """What Ray raises for a task's Decoder2VecError: its text is Ray's traceback and retry advice."""
    wrapped = RayTaskError("MapBatches(_read_rows)", "Traceback ...\nTo change retry attempts, ...",
                           Decoder2VecError("in.txt:3: not UTF-8")).as_instanceof_cause()
    assert isinstance(wrapped, Decoder2VecError) and "retry" in str(wrapped)
    outer = RuntimeError("the dataset failed")
    outer.__cause__ = wrapped
    assert _user_error(outer).args == ("in.txt:3: not UTF-8",)


# ----------------------------------------------------------------------------- 21: standard readers
def test_standard_parquet_readers_read_the_output_folder(encoder, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "vectors"
    encode_corpus(encoder, str(source), out, shard_rows=5)
    ours = read_output(out)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "_manifest.json", "shard-000000.parquet", "shard-000001.parquet", "shard-000002.parquet"]
    frame = pd.read_parquet(out)
    assert frame["id"].tolist() == list(range(12))
    table = pads.dataset(out).to_table()
    assert table.column("id").to_pylist() == list(range(12))
    np.testing.assert_array_equal(_vectors(table), _vectors(ours))
    np.testing.assert_array_equal(np.stack(frame["embedding"]), _vectors(ours))


def test_a_folder_written_before_the_rename_still_reads(encoder, tmp_path):
    out = tmp_path / "vectors"
    (tmp_path / "in.txt").write_text("a\nb\n")
    encode_corpus(encoder, str(tmp_path / "in.txt"), out)
    (out / MANIFEST).rename(out / "manifest.json")  # the layout before issue 23
    assert read_output(out)["id"].to_pylist() == [0, 1]


# ----------------------------------------------------------------------------- 23: not a file
def test_a_folder_or_fifo_as_input_says_what_it_is(folder, tmp_path, capsys):
    (tmp_path / "adir.txt").mkdir()
    os.mkfifo(tmp_path / "pipe.txt")
    argv = ["encode", "--model", folder, "--output", str(tmp_path / "v.npy"), "--input"]
    assert main([*argv, str(tmp_path / "adir.txt")]) == 2
    assert f"input {tmp_path / 'adir.txt'} is a directory; name its files or a quoted glob" in _error_line(capsys)
    assert main([*argv, str(tmp_path / "pipe.txt")]) == 2
    assert f"input {tmp_path / 'pipe.txt'} is not a regular file" in _error_line(capsys)
    assert main([*argv, str(tmp_path / "gone.txt")]) == 2
    assert "input file not found" in _error_line(capsys)
