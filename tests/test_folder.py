"""folder/config.py: the one answer to "what is this model name or path?" (`kind`) and to "is this stage
finished here?" (`finished`); atomic.py's single-file writes. Folders are made by hand (the files
`kind` looks at), so no model loads."""

import json
import os

import numpy as np
import pytest

from decoder2vec import Decoder2VecError
from decoder2vec.atomic import PARTIAL, write_atomic, write_json_atomic, write_npy_atomic
from decoder2vec.folder.config import CONFIG_NAME, finished, is_sentence_transformers, kind


def folder_with(tmp_path, name, *files):
    folder = tmp_path / name
    folder.mkdir()
    for file in files:
        (folder / file).write_text("{}")
    return folder


def test_kind_names_every_model_a_user_can_give(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # A saved Encoder carries sentence-transformers' files too: still an Encoder.
    encoder = folder_with(tmp_path, "enc", "config.json", CONFIG_NAME, "modules.json")
    st = folder_with(tmp_path, "st", "config.json", "modules.json")
    model = folder_with(tmp_path, "hf", "config.json")
    empty = folder_with(tmp_path, "empty")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    (tmp_path / "data").mkdir()
    assert [kind(x) for x in (encoder, str(st), model, empty, gguf)] == [
        "encoder", "sentence-transformers", "model", "nothing", "gguf"]
    assert [kind(x) for x in ("minilm", "multilingual-e5-small", "smollm2-135m")] == ["anchor", "anchor", "packaged"]
    assert [kind(x) for x in ("gpt2", "HuggingFaceTB/SmolLM2-135M")] == ["hub-id", "hub-id"]
    # Paths that are not here and cannot be hub ids: ./x, a/b/c, a missing .gguf, a path under a folder here.
    assert [kind(x) for x in ("./gone", "a/b/c", "gone.gguf", "data/gone", "", None)] == ["nothing"] * 6
    assert [is_sentence_transformers(x) for x in ("minilm", st, encoder, model, "org/name")] == [
        True, True, False, False, False]


def record(folder, *stages):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(json.dumps({"stages": [{"stage": s, "steps": 3} for s in stages]}))


def test_finished_is_the_last_stage_and_another_stage_is_an_error(tmp_path):
    assert finished(tmp_path / "missing", "mntp") is None
    record(tmp_path / "untrained")  # an Encoder no stage trained
    assert finished(tmp_path / "untrained", "mntp") is None
    record(tmp_path / "simcse", "mntp", "simcse")
    assert finished(tmp_path / "simcse", "simcse") == {"stage": "simcse", "steps": 3}
    with pytest.raises(Decoder2VecError, match="already holds a finished 'simcse' stage; choose another output_dir"):
        finished(tmp_path / "simcse", "supervised")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / CONFIG_NAME).write_text("{not json")
    with pytest.raises(Decoder2VecError, match="not a readable JSON file"):
        finished(tmp_path / "broken", "mntp")


def test_single_file_writes_are_atomic_and_leave_nothing_on_failure(tmp_path):
    path = write_json_atomic(tmp_path / "new" / "a.json", {"text": "æøå"}, indent=None)
    assert path.read_text(encoding="utf-8") == '{"text": "æøå"}\n'
    write_npy_atomic(tmp_path / "v.npy", np.arange(3, dtype=np.float32))
    assert np.load(tmp_path / "v.npy").tolist() == [0.0, 1.0, 2.0]

    def half_then_full_disk(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")
    with pytest.raises(Decoder2VecError, match=r"cannot write .*b\.json: No space left on device \(the disk is full\)"):
        write_atomic(tmp_path / "b.json", half_then_full_disk)
    assert sorted(os.listdir(tmp_path)) == ["new", "v.npy"]  # no b.json, no temporary file
    seen = []
    write_atomic(tmp_path / "c.txt", lambda tmp: seen.append(tmp.name) or tmp.write_text("x"))
    assert seen[0].startswith(f".c.txt.{PARTIAL}-") and seen[0].endswith(f"-{os.getpid()}")
