"""The Ray engine (decoder2vec.corpus.ray_engine) on a local Ray instance with 2 CPUs: same output as the
local engine, and a worker killed mid-job is retried with every id written exactly once."""

import json
import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest
from tiny import CORPUS, tiny_encoder

import ray  # a dev extra: missing, the suite fails here rather than skipping the file
from decoder2vec import Encoder
from decoder2vec.corpus import MANIFEST, encode_corpus, read_output
from decoder2vec.corpus.ray_engine import encode_dataset, encode_files
from decoder2vec.cli import main

TEXTS = [f"{CORPUS[i % 6]} number {i}" for i in range(400)]


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    # One Ray instance for the module: starting one costs seconds.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(tiny_encoder("qwen2").save_pretrained(tmp_path_factory.mktemp("models") / "tiny"))


def _vectors(table):
    return np.stack(table["embedding"].to_numpy(zero_copy_only=False))


def _cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_ray_equals_local(folder, tmp_path):
    """Two actors, two files, an empty line skipped: the same shards, ids, skipped ids and vectors."""
    (tmp_path / "a.txt").write_text("\n".join(TEXTS[:150] + [""] + TEXTS[150:200]) + "\n")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[200:]))
    inputs = [str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")]
    options = dict(shard_rows=64, batch_size=16, on_empty="skip", instruction="Find:")
    local = encode_corpus(Encoder.from_pretrained(folder, device="cpu"), inputs, tmp_path / "local", **options)
    remote = encode_files(folder, inputs, tmp_path / "ray", load={"device": "cpu"}, num_workers=2, **options)
    ours, theirs = read_output(tmp_path / "local"), read_output(tmp_path / "ray")
    assert theirs["id"].to_pylist() == ours["id"].to_pylist() == [i for i in range(401) if i != 150]
    assert remote.skipped_ids == local.skipped_ids == [150]
    assert remote.tokens == local.tokens and remote.rows == 400
    assert _cosines(_vectors(theirs), _vectors(ours)).min() >= 0.9999
    manifests = [json.loads((tmp_path / name / MANIFEST).read_text()) for name in ("local", "ray")]
    assert [s["end_row"] for s in manifests[1]["shards"]] == [s["end_row"] for s in manifests[0]["shards"]]
    assert manifests[1]["settings"] == manifests[0]["settings"]


def test_encode_dataset_keeps_columns_and_marks_empty_rows(folder):
    ds = ray.data.from_items([{"text": t, "doc": f"d{i}"} for i, t in enumerate(TEXTS[:5] + ["  "])])
    out = encode_dataset(ds, folder, load={"device": "cpu"}, on_empty="skip", normalize_embeddings=True)
    rows = sorted(out.take_all(), key=lambda r: r["doc"])
    assert [r["doc"] for r in rows] == [f"d{i}" for i in range(6)]
    assert rows[5]["embedding"] is None
    expected = Encoder.from_pretrained(folder, device="cpu").encode(TEXTS[:5], normalize_embeddings=True)
    assert _cosines(np.stack([r["embedding"] for r in rows[:5]]), expected).min() >= 0.9999


def test_killed_worker_is_retried(folder, tmp_path):
    """SIGKILL an Encoder actor once the first shard is written: Ray restarts it and retries its
    batches; the output has every id exactly once and the one-shot vectors."""
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS * 3) + "\n")
    out = tmp_path / "ray"
    killed = []

    def kill_an_actor():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            try:
                shards = json.loads((out / MANIFEST).read_text())["shards"]
            except (OSError, ValueError):
                shards = []
            actors = [p for p in psutil.process_iter(["cmdline"])
                      if "EncodeBatches" in " ".join(p.info["cmdline"] or [])]
            if shards and actors:
                killed.append((len(shards), actors[0].pid))
                os.kill(actors[0].pid, signal.SIGKILL)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_an_actor)
    killer.start()
    summary = encode_files(folder, str(source), out, load={"device": "cpu"}, num_workers=1, shard_rows=40,
                           batch_size=8)
    killer.join()
    assert killed and killed[0][0] < 30, "the actor was not killed mid-job"
    table = read_output(out)
    assert table["id"].to_pylist() == list(range(1200)) and summary.rows == 1200
    expected = Encoder.from_pretrained(folder, device="cpu").encode(TEXTS * 3)
    assert _cosines(_vectors(table), expected).min() >= 0.9999


def test_cli_engine_ray_names_an_empty_line(folder, tmp_path, capsys):
    """`decoder2vec encode --engine ray`: an empty text is one error line naming its file and line,
    found by the driver's read of every row before anything is encoded or written (issue 23.20)."""
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:10] + [" "] + TEXTS[10:20]) + "\n")
    argv = ["encode", "--model", folder, "--input", str(source), "--output", str(tmp_path / "ray"), "--device", "cpu",
            "--engine", "ray", "--shard-rows", "8", "--batch-size", "8"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(
        f"decoder2vec encode: error: {source}:11: empty text (id 10); pass --on-empty skip")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ray").exists()


def test_ray_data_reads_the_output_folder(folder, tmp_path):
    """The shard folder is a Parquet dataset for Ray Data (the manifest is `_manifest.json`, which
    Parquet readers skip; issue 23.21)."""
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:30]) + "\n")
    out = tmp_path / "vectors"
    encode_files(folder, str(source), out, load={"device": "cpu"}, shard_rows=8)
    rows = sorted(ray.data.read_parquet(str(out)).take_all(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == list(range(30))
    np.testing.assert_array_equal(np.stack([r["embedding"] for r in rows]), _vectors(read_output(out)))
