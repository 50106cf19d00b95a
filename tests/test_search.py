"""decoder2vec.search on a tiny Encoder and a few hundred texts: index a corpus encode into LanceDB,
search it (exact, quantized with rescoring, ANN), `decoder2vec index/search`, bad input, resume of
an interrupted build, and the server's TEI routes and /v1/search."""

import json
import shutil
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest
import torch
from huggingface_hub import InferenceClient
from tiny import CORPUS, tiny_encoder

from decoder2vec import Encoder
from decoder2vec.cli import main
from decoder2vec.corpus import encode_corpus, manifest_path, read_output
from decoder2vec.errors import Decoder2VecError
from decoder2vec.model.precision import calibration_ranges, quantize_embeddings
from decoder2vec.search import Index, build_index, search
from decoder2vec.search import build as build_module
from decoder2vec.serving import BackgroundServer, ServeSettings, create_app

WORDS = ["printing", "a table", "the chart", "spelling", "fonts", "macros", "slides", "cells", "styles", "sorting"]
# 300 distinct texts: the tiny corpus's sentences, each with a different subject and number.
TEXTS = [f"{CORPUS[i % len(CORPUS)]} About {WORDS[i % 10]}, note {i}." for i in range(300)]
QUERY_INSTRUCTION = "Retrieve passages that answer the question:"
KEY = "search-key-1"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(tiny_encoder("qwen2", max_length=128).save_pretrained(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(scope="module")
def encoder(folder):
    return Encoder.from_pretrained(folder, device="cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "passages.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


def encoded(encoder, corpus, out, **options):
    options.setdefault("normalize_embeddings", True)
    encode_corpus(encoder, str(corpus), out, shard_rows=64, **options)
    return out


@pytest.fixture(scope="module")
def db(encoder, corpus, tmp_path_factory):
    """A float32 index over the 300 texts (exact: far below EXACT_BELOW rows)."""
    work = tmp_path_factory.mktemp("float")
    build_index(encoded(encoder, corpus, work / "vectors"), work / "db", query_instruction=QUERY_INSTRUCTION)
    return work / "db"


def exact_top(encoder, query, k, instruction=QUERY_INSTRUCTION):
    """The known right answer: cosine over every text with numpy."""
    docs = encoder.encode(TEXTS, normalize_embeddings=True)
    q = encoder.encode(query, instruction=instruction, normalize_embeddings=True)
    scores = docs @ q
    order = np.argsort(-scores, kind="stable")[:k]
    return list(order), scores[order]


def test_search_equals_exact_cosine(encoder, db):
    index = Index(db)
    assert len(index) == 300 and index.record["index"] is None and index.record["metric"] == "cosine"
    for query in ("how do I sort cells?", TEXTS[17]):
        ids, scores = exact_top(encoder, query, 10)
        hits = search(encoder, db, query, k=10)
        assert [h.id for h in hits] == ids
        np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)
        assert [h.text for h in hits] == [TEXTS[i] for i in ids]  # texts read back from the inputs
    many = index.search(encoder, ["how do I sort cells?", TEXTS[17]], k=3)
    assert [[h.id for h in hits] for hits in many] == [exact_top(encoder, q, 3)[0] for q in
                                                       ("how do I sort cells?", TEXTS[17])]
    assert len(index.search(encoder, "fonts", k=1000)) == 300  # k past the table: every row, once


@pytest.mark.parametrize("precision", ["int8", "binary"])
def test_quantized_search_rescores_like_sentence_transformers(encoder, corpus, tmp_path, precision):
    """Candidates by the quantized query, scored by the float query against each candidate's stored
    vector brought back to float (sentence-transformers' semantic_search_usearch)."""
    build_index(encoded(encoder, corpus, tmp_path / "v", precision=precision), tmp_path / "db")
    query = "how do I change fonts in styles?"
    hits = search(encoder, tmp_path / "db", query, k=10, rescore_multiplier=30)  # 300 candidates: every row
    floats = encoder.encode(TEXTS, normalize_embeddings=True)
    q = encoder.encode(query, normalize_embeddings=True)
    if precision == "int8":
        ranges = calibration_ranges(floats[:64])  # the first shard's vectors set them (corpus/run.py)
        levels = quantize_embeddings(floats, "int8", ranges).astype(np.float64) + 128
        steps = (ranges[1] - ranges[0]) / 255
        expected = (levels * steps + ranges[0]) @ q
    else:
        expected = (floats > 0).astype(np.float64) @ q
    assert [h.id for h in hits] == list(np.argsort(-expected, kind="stable")[:10])
    np.testing.assert_allclose([h.score for h in hits], np.sort(expected)[::-1][:10], rtol=1e-5)
    few = search(encoder, tmp_path / "db", query, k=10)  # 40 candidates by the quantized query
    np.testing.assert_allclose([h.score for h in few], expected[[h.id for h in few]], rtol=1e-5)
    assert [h.score for h in few] == sorted((h.score for h in few), reverse=True)


def test_int8_with_the_encoders_own_ranges(corpus, tmp_path):
    """An Encoder calibrated beforehand quantises with its own ranges (the manifest records none):
    the index takes them from the Encoder that searches it."""
    calibrated = tiny_encoder("qwen2", max_length=128)
    ranges = calibrated.calibrate(TEXTS[::3], normalize_embeddings=True)
    build_index(encoded(calibrated, corpus, tmp_path / "v", precision="int8"), tmp_path / "db")
    index = Index(tmp_path / "db")
    with pytest.raises(Decoder2VecError, match="quantised with the Encoder's own ranges"):
        index.search_vector(np.ones(32, np.float32))
    hits = index.search(calibrated, "fonts", k=5, rescore_multiplier=60)
    floats = calibrated.encode(TEXTS, normalize_embeddings=True)
    levels = quantize_embeddings(floats, "int8", ranges).astype(np.float64) + 128
    expected = (levels * (ranges[1] - ranges[0]) / 255 + ranges[0]) @ calibrated.encode("fonts", normalize_embeddings=True)
    assert [h.id for h in hits] == list(np.argsort(-expected, kind="stable")[:5])


def test_ann_index_and_carried_text(encoder, corpus, tmp_path):
    """An IVF-HNSW-SQ index on request; the text carried in the shards is used as is."""
    out = encoded(encoder, corpus, tmp_path / "v", carry=["text"])
    record = build_index(out, tmp_path / "db", index_type="ivf_hnsw_sq")
    assert record["index"]["type"] == "ivf_hnsw_sq" and record["index"]["num_partitions"] == 3
    hits = search(encoder, tmp_path / "db", "the chart", k=10, nprobes=3)
    ids, _ = exact_top(encoder, "the chart", 10, instruction=None)
    assert len(set(h.id for h in hits) & set(ids)) >= 8
    assert all(h.text == TEXTS[h.id] for h in hits)


def test_cli_encode_index_search(folder, corpus, tmp_path, capsys):
    vectors, db = tmp_path / "vectors", tmp_path / "db"
    assert main(["encode", "--model", folder, "--input", str(corpus), "--output", str(vectors),
                 "--normalize-embeddings", "--shard-rows", "100"]) == 0
    assert main(["index", str(vectors), "--output", str(db), "--query-instruction", QUERY_INSTRUCTION]) == 0
    assert "indexed 300 rows" in capsys.readouterr().out
    assert main(["search", str(db), "how do I sort cells?", "-k", "3", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    encoder = Encoder.from_pretrained(folder, device="cpu")
    ids, scores = exact_top(encoder, "how do I sort cells?", 3)
    assert [r["id"] for r in rows] == ids and [r["rank"] for r in rows] == [1, 2, 3]
    np.testing.assert_allclose([r["score"] for r in rows], scores, atol=1e-5)
    assert main(["search", str(db), "how do I sort cells?", "-k", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "score", "id", "text"] and len(table) == 3
    assert main(["index", str(vectors), "--output", str(db), "--query-instruction", QUERY_INSTRUCTION]) == 0  # done


def error_line(capsys, verb):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"decoder2vec {verb}: error: ")
    return err


@pytest.mark.parametrize("argv, fragment", [
    (["search", "{db}", "   "], "the query is empty"),
    (["search", "{db}", ""], "the query is empty"),
    (["search", "{db}", "fonts", "-k", "0"], "k must be an integer >= 1"),
    (["search", "{db}", "fonts", "-k", "-3"], "k must be an integer >= 1"),
    (["search", "{tmp}", "fonts"], "is not a decoder2vec index"),
    (["search", "{tmp}/missing", "fonts"], "not found"),
    (["index", "{tmp}", "--output", "{tmp}/db2"], "is not a corpus output"),
    (["index", "{db}/../vectors", "--output", "{db}/../vectors/db"], "would be inside the corpus output"),
])
def test_bad_input_is_one_line(db, tmp_path, capsys, argv, fragment):
    (tmp_path / "notes.txt").write_text("mine")
    argv = [a.format(db=db, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert fragment in error_line(capsys, argv[0])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_mismatched_encoder_is_refused(db, encoder, tmp_path):
    other = tiny_encoder("qwen2", max_length=128, pooling="last_token")
    with pytest.raises(Decoder2VecError, match="another Encoder .pooling: index 'mean', this Encoder .last_token."):
        search(other, db, "fonts")
    # Same settings, other weights (a model retrained and saved elsewhere): the fingerprint differs.
    retrained = tiny_encoder("qwen2", max_length=128)
    with torch.no_grad():
        next(retrained.model.parameters()).add_(0.01)
    retrained = Encoder.from_pretrained(retrained.save_pretrained(tmp_path / "m2"))
    with pytest.raises(Decoder2VecError, match="another Encoder .model_fingerprint: index 'sha256:"):
        search(retrained, db, "fonts")
    copied = Encoder.from_pretrained(shutil.copytree(encoder.path, tmp_path / "copy"))  # same files: accepted
    assert [h.id for h in search(copied, db, "fonts", k=3)] == [h.id for h in search(encoder, db, "fonts", k=3)]
    with pytest.raises(Decoder2VecError, match="k must be an integer >= 1"):
        search(encoder, db, "fonts", k=True)


def test_corrupted_table_and_record(db, encoder, tmp_path):
    broken = tmp_path / "db"
    shutil.copytree(db, broken)
    for data in (broken / "corpus.lance" / "data").iterdir():
        data.write_bytes(b"not lance")
    with pytest.raises(Decoder2VecError, match="the index table cannot be read") as info:
        search(encoder, broken, "fonts")
    assert "\n" not in str(info.value)
    (broken / "decoder2vec_index.json").write_text("{half a rec")
    with pytest.raises(Decoder2VecError, match="not a readable index record"):
        Index(broken)
    shutil.rmtree(broken / "corpus.lance")
    shutil.copy(db / "decoder2vec_index.json", broken / "decoder2vec_index.json")
    with pytest.raises(Decoder2VecError, match="the index table cannot be read"):
        Index(broken)


@pytest.mark.parametrize("crash_at", [1, 3])
def test_interrupted_build_resumes_with_every_row_once(encoder, corpus, tmp_path, monkeypatch, crash_at):
    """Killed between a shard's commit and the record (the table is one commit ahead of the record):
    the unfinished index is refused, and the same call rolls back that commit and finishes."""
    vectors = encoded(encoder, corpus, tmp_path / "v")
    real = build_module.write_record
    calls = {"n": 0}

    def crash(db, record):
        if record["shards"] and len(record["shards"]) == crash_at and record["version"] is not None:
            calls["n"] += 1
            raise KeyboardInterrupt("killed")
        real(db, record)

    monkeypatch.setattr(build_module, "write_record", crash)
    with pytest.raises(KeyboardInterrupt):
        build_index(vectors, tmp_path / "db")
    monkeypatch.setattr(build_module, "write_record", real)
    with pytest.raises(Decoder2VecError, match="has not finished"):
        Index(tmp_path / "db")
    with pytest.raises(Decoder2VecError, match="built with other settings .*query_instruction"):
        build_index(vectors, tmp_path / "db", query_instruction="another")
    record = build_index(vectors, tmp_path / "db")
    assert calls["n"] == 1 and record["complete"] and record["rows"] == 300
    table = Index(tmp_path / "db").table.to_arrow()
    assert sorted(table["id"].to_pylist()) == list(range(300))  # every row, once
    stored = dict(zip(table["id"].to_pylist(), table["vector"].to_pylist()))
    source = read_output(vectors)
    np.testing.assert_array_equal(np.array([stored[i] for i in source["id"].to_pylist()]),
                                  np.stack(source["embedding"].to_numpy(zero_copy_only=False)))


KILL_AFTER_SECOND_SHARD = """
import os, signal, sys
from decoder2vec.search import build as build_module
real = build_module.write_record
def write_record(db, record):
    if len(record["shards"]) == 2 and record["version"] is not None:
        os.kill(os.getpid(), signal.SIGKILL)  # the second shard is committed, the record not yet written
    real(db, record)
build_module.write_record = write_record
build_module.build_index(sys.argv[1], sys.argv[2])
"""


def test_sigkill_mid_build_then_the_same_call_finishes(encoder, corpus, tmp_path):
    vectors = encoded(encoder, corpus, tmp_path / "v")
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_SECOND_SHARD, str(vectors), str(tmp_path / "db")],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((tmp_path / "db" / "decoder2vec_index.json").read_text())["rows"] == 64  # one shard recorded
    record = build_index(vectors, tmp_path / "db")
    ids = Index(tmp_path / "db").table.to_arrow()["id"].to_pylist()
    assert record["rows"] == 300 and sorted(ids) == list(range(300))


def test_unfinished_corpus_and_changed_inputs_are_refused(encoder, corpus, tmp_path):
    vectors = encoded(encoder, corpus, tmp_path / "v")
    manifest = json.loads(manifest_path(vectors).read_text())
    manifest_path(vectors).write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(Decoder2VecError, match="has not finished"):
        build_index(vectors, tmp_path / "db")
    manifest_path(vectors).write_text(json.dumps(manifest))
    changed = tmp_path / "passages.txt"
    shutil.copy(corpus, changed)
    moved = json.loads(json.dumps(manifest))
    moved["settings"]["inputs"][0]["path"] = str(changed)
    manifest_path(vectors).write_text(json.dumps(moved))
    changed.write_text(changed.read_text() + "one more line\n")
    with pytest.raises(Decoder2VecError, match="changed since it was encoded"):
        build_index(vectors, tmp_path / "db")
    changed.unlink()
    with pytest.raises(Decoder2VecError, match="is gone; keep the inputs, or encode with --carry text"):
        build_index(vectors, tmp_path / "db2")


@pytest.fixture(scope="module")
def server(encoder, db):
    settings = ServeSettings(model_name="tiny", api_key=KEY, max_inputs=8, index=str(db))
    with BackgroundServer(encoder, settings) as url:
        yield url


AUTH = {"Authorization": f"Bearer {KEY}"}


def test_tei_client_feature_extraction(server, encoder):
    """huggingface_hub's own TEI client against the live server."""
    client = InferenceClient(model=server, token=KEY)
    got = client.feature_extraction("Paris is the capital of France.")
    np.testing.assert_allclose(np.squeeze(got), encoder.encode("Paris is the capital of France.",
                                                               normalize_embeddings=True), atol=1e-6)
    texts = ["A dog.", "The quick brown fox."]
    got = client.feature_extraction(texts, dimensions=16)
    want = encoder.encode(texts, normalize_embeddings=True, truncate_dim=16)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_tei_shapes_and_errors(server, encoder):
    info = httpx.get(f"{server}/info", headers=AUTH).json()
    assert info["model_id"] == "tiny" and info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == 128 and info["max_client_batch_size"] == 8
    answer = httpx.post(f"{server}/embed", json={"inputs": "A dog."}, headers=AUTH).json()
    assert np.array(answer).shape == (1, encoder.dimension)
    for body, status, fragment in [({"inputs": ""}, 422, "input[0] is empty"),
                                   ({"inputs": ["a"] * 9}, 413, "at most 8"),
                                   ({"inputs": "a", "normalize": False}, 422, "unit vectors"),
                                   ({"inputs": "a", "truncate": True}, 422, "--truncate"),
                                   ({"inputs": "a", "prompt_name": "query"}, 422, "no named prompts"),
                                   ({"text": "a"}, 422, "'inputs' is required")]:
        response = httpx.post(f"{server}/embed", json=body, headers=AUTH)
        error = response.json()
        assert response.status_code == status and set(error) == {"error", "error_type"}, error
        assert error["error_type"] == "Validation" and fragment in error["error"]
    assert httpx.post(f"{server}/embed", json={"inputs": "a"}).status_code == 401
    assert httpx.get(f"{server}/info").status_code == 401


def test_search_route_with_auth(server, encoder, db):
    response = httpx.post(f"{server}/v1/search", json={"query": "how do I sort cells?", "k": 5}, headers=AUTH)
    assert response.status_code == 200
    data = response.json()["data"]
    ids, scores = exact_top(encoder, "how do I sort cells?", 5)
    assert [row["id"] for row in data] == ids and [row["text"] for row in data] == [TEXTS[i] for i in ids]
    np.testing.assert_allclose([row["score"] for row in data], scores, atol=1e-5)
    assert httpx.post(f"{server}/v1/search", json={"query": "fonts"}).status_code == 401
    for body, fragment in [({"query": " "}, "empty"), ({"query": "a", "k": 0}, "k must be"),
                           ({"k": 3}, "the query must be a string"), ({"query": "a", "k": 5000}, "at most 1000")]:
        response = httpx.post(f"{server}/v1/search", json=body, headers=AUTH)
        assert response.status_code == 422 and fragment in response.json()["error"]["message"]


def test_server_refuses_an_index_of_another_encoder(db):
    with pytest.raises(Decoder2VecError, match="another Encoder"):
        create_app(tiny_encoder("qwen2", max_length=128, pooling="last_token"), ServeSettings(index=str(db)))
