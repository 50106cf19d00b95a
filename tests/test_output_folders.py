"""Saving and exporting never delete what decoder2vec did not write (atomic.py)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_encoder

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.atomic import MARKER, PARTIAL, REPLACED, atomic_folder
from decoder2vec.cli import main
from decoder2vec.folder.export import export_sentence_transformers

TEXTS = ["A dog.", "Paris is the capital of France."]


def user_files(folder: Path) -> None:
    (folder / "src").mkdir(parents=True)
    (folder / "NOTES.md").write_text("my notes")
    (folder / "src" / "main.py").write_text("print('hi')")


def assert_user_files(folder: Path) -> None:
    assert (folder / "NOTES.md").read_text() == "my notes"
    assert (folder / "src" / "main.py").read_text() == "print('hi')"


@pytest.fixture(scope="module")
def encoder():
    return tiny_encoder("llama")


@pytest.mark.parametrize("write", ["save", "export", "cli-export"])
def test_a_users_folder_is_refused(encoder, tmp_path, write, capsys):
    target = tmp_path / "mine"
    user_files(target)
    if write == "cli-export":
        source = encoder.save_pretrained(tmp_path / "enc")
        capsys.readouterr()
        assert main(["export", str(source), "--to", "sentence-transformers", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "not a decoder2vec output" in err and "--overwrite" in err
    else:
        with pytest.raises(Decoder2VecError, match="not a decoder2vec output"):
            encoder.save_pretrained(target) if write == "save" else export_sentence_transformers(encoder, target)
    assert sorted(p.name for p in target.iterdir()) == ["NOTES.md", "src"]
    assert_user_files(target)


def test_overwrite_replaces_only_decoder2vecs_files(encoder, tmp_path):
    target = tmp_path / "mine"
    user_files(target)
    export_sentence_transformers(encoder, target, overwrite=True)
    assert_user_files(target)
    np.testing.assert_allclose(Encoder.from_pretrained(target).encode(TEXTS), encoder.encode(TEXTS), atol=1e-5)
    # The marker lists decoder2vec's files, not the user's.
    files = json.loads((target / MARKER).read_text())["files"]
    assert "model.safetensors" in files and "README.md" in files
    assert "NOTES.md" not in files and "src/main.py" not in files


def test_resave_keeps_user_files_and_drops_stale_own_files(encoder, tmp_path):
    target = tmp_path / "out"
    with atomic_folder(target, kind="encoder") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "a.txt").write_text("a1")
        (tmp / "sub" / "stale.txt").write_text("old")
    (target / "NOTES.md").write_text("my notes")
    (target / "sub" / "mine.txt").write_text("mine")
    with atomic_folder(target, kind="encoder") as tmp:
        (tmp / "a.txt").write_text("a2")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == [
        MARKER, "NOTES.md", "a.txt", "sub", "sub/mine.txt"]
    assert (target / "a.txt").read_text() == "a2"
    # A real Encoder folder re-saved in place of an earlier one keeps the user's notes.
    folder = encoder.save_pretrained(tmp_path / "enc")
    (folder / "NOTES.md").write_text("my notes")
    encoder.save_pretrained(folder)
    assert (folder / "NOTES.md").read_text() == "my notes"
    np.testing.assert_allclose(Encoder.from_pretrained(folder).encode(TEXTS), encoder.encode(TEXTS), atol=1e-5)


def test_current_folder_parents_and_home_are_refused(encoder, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    for target in (".", "..", str(tmp_path), str(Path.home())):
        with pytest.raises(Decoder2VecError, match="current folder, one of its parents or the home folder"):
            encoder.save_pretrained(target)
    assert sorted(os.listdir(work)) == ["keep.txt"]


def test_exporting_a_stage_into_its_own_folder_or_a_parent_is_refused(encoder, tmp_path, capsys):
    stage = encoder.save_pretrained(tmp_path / "runs" / "mntp")
    (stage / "adapter").mkdir()
    (stage / "adapter" / "adapter_model.safetensors").write_text("lora")
    (stage / "logs").mkdir()
    before = sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))
    capsys.readouterr()
    for target in (stage, tmp_path / "runs"):
        assert main(["export", str(stage), "--to", "sentence-transformers", str(target), "--overwrite"]) == 2
        assert "holds the model being written" in capsys.readouterr().err
    loaded = Encoder.from_pretrained(stage)
    with pytest.raises(Decoder2VecError, match="holds the model being written"):
        loaded.save_pretrained(stage)
    assert sorted(str(p.relative_to(stage)) for p in stage.rglob("*")) == before


def test_a_file_as_target_is_refused(encoder, tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(Decoder2VecError, match="is a file, not a folder"):
        encoder.save_pretrained(tmp_path / "out")
    assert (tmp_path / "out").read_text() == "x"


def test_an_error_inside_leaves_the_target_as_it_was(tmp_path):
    target = tmp_path / "out"
    with atomic_folder(target, kind="encoder") as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_folder(target, kind="encoder") as tmp:
            (tmp / "a.txt").write_text("second")
            raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_killed_save_leaves_a_named_partial_folder_that_the_next_save_removes(encoder, tmp_path):
    target = tmp_path / "enc"
    script = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from tiny import tiny_encoder\n"
        "enc = tiny_encoder('llama')\n"
        "real = enc.write_files\n"
        "def slow(folder, **kw):\n"
        "    real(folder, **kw); print('written', flush=True); time.sleep(60)\n"
        "enc.write_files = slow\n"
        "enc.save_pretrained(%r)\n"
    ) % (str(Path(__file__).parent), str(target))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = iter(proc.stdout.readline, "")  # the tokenizer trainer prints blank lines first
        assert "written" in (line.strip() for line in lines), proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert not target.exists() and len(leftovers) == 1
    assert leftovers[0].startswith(f".enc.{PARTIAL}-{proc.pid}-")
    encoder.save_pretrained(target)
    assert [p.name for p in tmp_path.iterdir()] == ["enc"]


def test_a_kill_between_the_renames_is_finished_by_the_next_save(encoder, tmp_path):
    """The old folder was renamed aside, with a user's file in it, and the process died."""
    target = encoder.save_pretrained(tmp_path / "enc")
    (target / "NOTES.md").write_text("my notes")
    aside = tmp_path / f".enc.{REPLACED}-999999999"
    os.replace(target, aside)  # killed right after the first rename: no target, the old one aside
    encoder.save_pretrained(target)  # restores the old folder first, then replaces decoder2vec's files
    assert (target / "NOTES.md").read_text() == "my notes"
    assert [p.name for p in tmp_path.iterdir()] == ["enc"]
    # Killed after the second rename: the new folder is in place, the user's file still aside.
    os.replace(target / "NOTES.md", tmp_path / "notes")
    aside.mkdir()
    os.replace(tmp_path / "notes", aside / "NOTES.md")
    encoder.save_pretrained(target)
    assert (target / "NOTES.md").read_text() == "my notes"
    assert [p.name for p in tmp_path.iterdir()] == ["enc"]
