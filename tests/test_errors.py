"""Issue 13 point 5, one case a row: bad input is one line naming the problem, never a traceback.

Each CLI case runs `decoder2vec VERB ...` in-process and checks the exit code (2) and that stderr
holds exactly one line besides progress bars (errors found while streaming an input come after
the model load): `decoder2vec VERB: error: ...`, naming the problem.
"""

import json
import re

import pytest
import torch
from tiny import tiny_encoder

from decoder2vec import Decoder2VecError, Encoder
from decoder2vec.cli import main


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_encoder("llama").save_pretrained(tmp_path_factory.mktemp("models") / "enc")


def broken_folder(folder, tmp_path, name, edit):
    copy = tmp_path / name
    copy.mkdir()
    for file in folder.iterdir():
        if file.is_file():
            (copy / file.name).write_bytes(file.read_bytes())
    edit(copy)
    return str(copy)


def config_text(text):
    return lambda f: (f / "decoder2vec_config.json").write_text(text)


def truncate_weights(f):
    weights = f / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def inputs(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


CASES = {
    "corrupt config": lambda f, t: (["info", broken_folder(f, t, "c1", config_text("{oops"))],
                                    "decoder2vec_config.json: not a readable JSON file"),
    "list-shaped config": lambda f, t: (["info", broken_folder(f, t, "c2", config_text("[]"))],
                                        "decoder2vec_config.json: expected a JSON object, got list"),
    "wrongly typed config": lambda f, t: (["info", broken_folder(f, t, "c3", config_text('{"pooling": 3}'))],
                                          "'pooling' must be str, got 3"),
    "truncated safetensors": lambda f, t: (["info", broken_folder(f, t, "w", truncate_weights)],
                                           "w/model.safetensors: unreadable weights"),
    "8-byte GGUF": lambda f, t: (["info", inputs(t, "x.gguf", b"GGUF\x03\x00\x00\x00")],
                                 "x.gguf is not a complete GGUF file (8 bytes"),
    "cuda without CUDA": lambda f, t: (["encode", "--model", str(f), "--device", "cuda", "--input",
                                        inputs(t, "a.txt", b"a\n"), "--output", str(t / "o.npy")],
                                       "device 'cuda': this torch build sees no CUDA GPU"),
    "bad .jsonl line": lambda f, t: (["encode", "--model", str(f), "--input",
                                      inputs(t, "a.jsonl", b'{"text": "a"}\n{"text": \n'),
                                      "--output", str(t / "o.npy")], "a.jsonl:2"),
    "latin-1 .txt": lambda f, t: (["encode", "--model", str(f), "--input",
                                   inputs(t, "l.txt", "ok\nK\u00f8benhavn\n".encode("latin-1")),
                                   "--output", str(t / "o.npy")], "l.txt:2"),
    "output is a folder": lambda f, t: (["encode", "--model", str(f), "--input", inputs(t, "a.txt", b"a\n"),
                                         "--output", str(t / "out.npy")], "is a folder"),
    "non-integer batch size": lambda f, t: (["encode", "--model", str(f), "--input", inputs(t, "a.txt", b"a\n"),
                                             "--output", str(t / "o.npy"), "--batch-size", "2.5"], "--batch-size"),
    "non-integer truncate dim": lambda f, t: (["encode", "--model", str(f), "--input", inputs(t, "a.txt", b"a\n"),
                                               "--output", str(t / "o.npy"), "--truncate-dim", "x"], "--truncate-dim"),
    "port out of range": lambda f, t: (["serve", str(f), "--port", "70000"], "70000"),
}


@pytest.mark.allow_skip(reason="the no-CUDA error cannot be raised on a machine that has CUDA")  # the "cuda without CUDA" case
@pytest.mark.parametrize("case", list(CASES))
def test_cli_errors_are_one_line(case, folder, tmp_path, capsys, monkeypatch):
    if case == "cuda without CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "out.npy").mkdir()
    argv, message = CASES[case](folder, tmp_path)
    if case == "port out of range":
        def no_load(*args, **kwargs):
            raise AssertionError("the model was loaded before the port was checked")
        monkeypatch.setattr(Encoder, "from_pretrained", no_load)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines()
             if line.strip() and not re.search(r"\d+%\|", line)]  # tqdm progress bars
    assert len(lines) == 1 and lines[0].startswith(f"decoder2vec {argv[0]}: error: "), lines
    assert message in lines[0], lines[0]


@pytest.mark.parametrize("call, message", [
    (lambda e: e.encode(["ok", "bad \ud800 text"]), r"texts\[1\].*surrogate"),
    (lambda e: e.encode(["ok"], truncate_dim="8"), "truncate_dim"),
    (lambda e: e.encode(["ok"], batch_size=2.5), "batch_size"),
    (lambda e: e.encode(["ok"], max_batch_tokens=0), "max_batch_tokens"),
    (lambda e: e.encode(["ok", "  "]), r"texts\[1\] is empty"),
])
def test_api_errors_are_one_line(call, message):
    with pytest.raises(Decoder2VecError, match=message) as info:
        call(tiny_encoder("llama"))
    assert "\n" not in str(info.value)
    json.dumps(str(info.value))  # a message a server can put in a JSON body as it is
