"""The OpenAI-compatible server, driven by the real `openai` client over loopback."""

import asyncio
import base64
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tiny import tiny_encoder

from decoder2vec import Decoder2VecError
from decoder2vec.cli import main
from decoder2vec.serving import BackgroundServer, MicroBatcher, ServeSettings, check_bind, create_app
from decoder2vec.serving.batcher import split
from decoder2vec.serving.server import free_port

KEY = "test-key-123"
TEXTS = ["The quick brown fox jumps over the lazy dog.", "A dog.", "Paris is the capital of France."]
INSTRUCTION = "Retrieve passages that answer the question:"


@pytest.fixture(scope="module")
def encoder():
    return tiny_encoder("llama", max_length=64)


@pytest.fixture(scope="module")
def server(encoder):
    settings = ServeSettings(model_name="tiny", api_key=KEY, max_inputs=8, max_request_bytes=4096)
    with BackgroundServer(encoder, settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def vectors(response):
    rows = [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
    # The client decodes base64 itself only when it chose the format; asked for, it hands back the string.
    return np.array([np.frombuffer(base64.b64decode(r), dtype="<f4") if isinstance(r, str) else r for r in rows])


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_vectors_equal_encode(client, encoder, encoding_format):
    response = client.embeddings.create(model="tiny", input=TEXTS, encoding_format=encoding_format)
    # The server returns unit vectors, like OpenAI.
    np.testing.assert_allclose(vectors(response), encoder.encode(TEXTS, normalize_embeddings=True), atol=1e-6)
    tokens = sum(len(ids) for ids in encoder.tokenize(TEXTS)[0])
    assert response.usage.prompt_tokens == response.usage.total_tokens == tokens
    assert response.model == "tiny"


def test_base64_is_little_endian_float32(server, encoder):
    body = httpx.post(f"{server}/v1/embeddings", json={"input": "A dog.", "encoding_format": "base64"},
                      headers={"Authorization": f"Bearer {KEY}"}).json()
    raw = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(raw, encoder.encode("A dog.", normalize_embeddings=True), atol=1e-6)


def test_dimensions_and_instruction(client, encoder):
    response = client.embeddings.create(model="tiny", input=TEXTS, dimensions=8,
                                        extra_body={"instruction": INSTRUCTION})
    expected = encoder.encode(TEXTS, instruction=INSTRUCTION, normalize_embeddings=True, truncate_dim=8)
    np.testing.assert_allclose(vectors(response), expected, atol=1e-6)
    assert np.allclose(np.linalg.norm(vectors(response), axis=1), 1, atol=1e-5)
    per_input = [INSTRUCTION, None, "Classify the topic:"]
    response = client.embeddings.create(model="tiny", input=TEXTS, extra_body={"instruction": per_input})
    np.testing.assert_allclose(vectors(response), encoder.encode(TEXTS, instruction=per_input,
                                                                 normalize_embeddings=True), atol=1e-6)


def test_single_string_models_and_health(client, server, encoder):
    response = client.embeddings.create(model="tiny", input="A dog.")
    np.testing.assert_allclose(vectors(response)[0], encoder.encode("A dog.", normalize_embeddings=True), atol=1e-6)
    assert [m.id for m in client.models.list()] == ["tiny"]
    health = httpx.get(f"{server}/health").json()  # no key needed
    assert health["status"] == "ok" and health["dimension"] == encoder.dimension
    assert health["max_batch_tokens"] == 1024  # the CPU default (the model's max length, 64, is less)


def error_of(server, body, *, key=KEY, path="/v1/embeddings", raw=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is not None:
        response = httpx.post(f"{server}{path}", content=raw, headers=headers)
    else:
        response = httpx.post(f"{server}{path}", json=body, headers=headers)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return response.status_code, error


@pytest.mark.parametrize("body, status, fragment", [
    ({"input": ["a"] * 9}, 413, "at most 8"),
    ({"input": ["a long text " * 20]}, 413, "at most 64"),
    ({"input": ["x" * 5000]}, 413, "at most 4096"),
    ({"input": ["fine", ""]}, 422, "input[1] is empty"),
    ({"input": ["fine", "ok", " \n\t"]}, 422, "input[2] is empty (whitespace only"),
    ({"input": ["fine", 3.5]}, 422, "input[1] is float"),
    ({"input": []}, 422, "empty list"),
    ({}, 422, "'input' is required"),
    ({"input": [[1, 2, 3]]}, 422, "token arrays"),
    ({"input": [1, 2, 3]}, 422, "token arrays"),
    ({"input": "a", "encoding_format": "int8"}, 422, "encoding_format"),
    ({"input": "a", "dimensions": 0}, 422, "dimensions"),
    ({"input": "a", "dimensions": 33}, 422, "dimensions"),
    ({"input": ["a", "b"], "instruction": ["x"]}, 422, "instruction"),
    ({"input": "a", "model": "text-embedding-3-small"}, 404, "this server serves 'tiny'"),
])
def test_limits_and_bad_input(server, body, status, fragment):
    code, error = error_of(server, body)
    assert code == status and fragment in error["message"]


def test_auth_and_bad_json(server, client):
    for key in (None, "wrong-key", KEY + "x"):
        code, error = error_of(server, {"input": "a"}, key=key)
        assert code == 401 and error["code"] == "invalid_api_key"
    response = httpx.get(f"{server}/v1/models", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    code, error = error_of(server, None, raw=b"{not json")
    assert code == 400
    with pytest.raises(openai.AuthenticationError):
        stranger = openai.OpenAI(base_url=client.base_url, api_key="nope", max_retries=0)
        stranger.embeddings.create(model="tiny", input="a")


def test_truncate_setting(encoder):
    long_text = "a long text " * 20
    with BackgroundServer(encoder, ServeSettings(model_name="tiny", truncate=True)) as url:
        body = httpx.post(f"{url}/v1/embeddings", json={"input": long_text}).json()
    with pytest.warns(UserWarning, match="truncated"):
        expected = encoder.encode(long_text, normalize_embeddings=True)
    np.testing.assert_allclose(body["data"][0]["embedding"], expected, atol=1e-6)
    assert body["usage"]["prompt_tokens"] == encoder.max_length


def test_batcher_joins_waiting_requests():
    """Requests that arrive while the model is busy go into the next call together."""
    calls, gate = [], threading.Event()

    def encode(texts, instructions):
        calls.append(len(texts))
        gate.wait(5)
        return np.arange(len(texts), dtype=np.float32)[:, None].repeat(2, 1)

    async def scenario():
        batcher = MicroBatcher(encode, max_batch_tokens=100, max_wait_ms=0, max_queue=8)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(["a"], [None], [1]))
        while not calls:  # the first request is inside the model
            await asyncio.sleep(0.001)
        rest = [asyncio.create_task(batcher.submit([f"t{i}", "u"], [None, None], [1, 1])) for i in range(5)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert calls == [1, 10]
    # Each request gets its own rows back, in order.
    assert [r[:, 0].tolist() for r in results] == [[0], [0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_loop_stays_responsive_overload_and_graceful_shutdown(encoder):
    gate, entered = threading.Event(), threading.Event()
    slow = tiny_encoder("llama")
    original = slow.encode

    def blocking_encode(*args, **kwargs):
        entered.set()
        gate.wait(10)
        return original(*args, **kwargs)

    slow.encode = blocking_encode
    server = BackgroundServer(slow, ServeSettings(model_name="tiny", max_queue=1))
    url = server.start()
    results = {}

    def post(name):
        results[name] = httpx.post(f"{url}/v1/embeddings", json={"input": TEXTS}, timeout=30)

    first = threading.Thread(target=post, args=("first",))
    first.start()
    assert entered.wait(10)
    # The model thread is busy; the event loop still answers.
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    second = threading.Thread(target=post, args=("second",))
    second.start()
    while httpx.get(f"{url}/health", timeout=5).json()["queued"] < 1:
        time.sleep(0.01)
    post("third")  # the queue (size 1) is full
    assert results["third"].status_code == 503 and results["third"].json()["error"]["code"] == "server_overloaded"
    assert results["third"].headers["retry-after"] == "1"
    # Shut down while two requests are in flight: both still get their vectors.
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    time.sleep(0.1)
    gate.set()
    for thread in (first, second, stopper):
        thread.join(30)
    expected = original(TEXTS, normalize_embeddings=True)
    for name in ("first", "second"):
        assert results[name].status_code == 200
        np.testing.assert_allclose([d["embedding"] for d in results[name].json()["data"]], expected, atol=1e-6)
    assert not server.thread.is_alive()


def test_bind_rules(capsys):
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", "key")
    check_bind("0.0.0.0", None, allow_insecure=True)
    with pytest.raises(Decoder2VecError, match="non-loopback"):
        check_bind("0.0.0.0", None)
    with pytest.raises(Decoder2VecError, match="non-loopback"):
        check_bind("example.org", "")
    # The CLI refuses before loading any model.
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--allow-insecure" in capsys.readouterr().err


def test_cli_refuses_pickled_weights(tmp_path, capsys):
    folder = tiny_encoder("llama").save_pretrained(tmp_path / "enc")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    assert main(["serve", str(folder)]) == 2
    assert "does not load pickled" in capsys.readouterr().err


def test_cli_serve_process_and_sigterm(tmp_path, encoder):
    """`decoder2vec serve FOLDER` as a real process: it answers, and SIGTERM stops it cleanly."""
    folder = encoder.save_pretrained(tmp_path / "enc")
    port = free_port()
    code = "import sys; from decoder2vec.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", str(folder), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        body = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"model": "enc", "input": TEXTS}).json()
        np.testing.assert_allclose([d["embedding"] for d in body["data"]],
                                   encoder.encode(TEXTS, normalize_embeddings=True), atol=1e-5)
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why it ended.
        assert proc.wait(60) in (0, -signal.SIGTERM)
        output = proc.stdout.read()
        assert "serving 'enc'" in output and "Finished server process" in output, output
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


@pytest.mark.real
def test_real_smollm2(smollm2):
    with BackgroundServer(smollm2, ServeSettings(model_name="smollm2-135m")) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        response = client.embeddings.create(model="smollm2-135m", input=TEXTS)
    np.testing.assert_allclose(vectors(response), smollm2.encode(TEXTS, normalize_embeddings=True), atol=1e-5)


# ----------------------------------------------------------------- hostile clients
# Real uvicorn servers on 127.0.0.1 (free ports). Where timing matters the model is held at a gate,
# and the assertions are on which texts reached the model, never on wall time.

AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


class Recorder:
    """Wraps an encoder's encode: records the texts of every model call; the first call can be held
    at a gate until the test opens it."""

    def __init__(self, encoder, hold_first: bool = False):
        self.calls, self.entered, self.gate = [], threading.Event(), threading.Event()
        if not hold_first:
            self.gate.set()
        self.original = encoder.encode
        encoder.encode = self

    def __call__(self, texts, *args, **kwargs):
        self.calls.append(list(texts))
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return self.original(texts, *args, **kwargs)


def wait_until(condition, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def scrape(url: str, headers=None) -> dict:
    """/metrics as {(name, labels...): value}, parsed with prometheus_client's own parser."""
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, *sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def answered(url: str, status: int, path: str = "/v1/embeddings") -> float:
    return scrape(url).get(("decoder2vec_requests_total", ("path", path), ("status", str(status))), 0)


def raw_post(url: str, body: bytes) -> socket.socket:
    """Sends a whole POST on a fresh socket and returns the socket without reading the answer."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body)
    return sock


def varied_texts(n: int) -> list[str]:
    words = "alpha beta gamma delta fox dog river town bread news".split()
    return [f"Text {i}: " + " ".join(words[: 1 + i % len(words)]) for i in range(n)]


def test_keep_alive_survives_client_errors(server):
    """Bad Unicode (a lone surrogate from a JSON escape), broken JSON and every other client error is a
    4xx on the same keep-alive connection, and the next request on it is answered."""
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def post(body: bytes, headers=AUTH):
        conn.request("POST", "/v1/embeddings", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    status, body = post(b'{"input": ["fine", "bad \\ud800 text"]}')
    assert status == 422, body
    assert body["error"]["message"] == "input[1] is not valid Unicode: a lone surrogate U+D800 at character 4"
    sock = conn.sock  # the connection every later request must reuse
    cases = [
        (b'{"input": "a", "instruction": ["\\udfff"]}', 422, "instruction[0] is not valid Unicode"),
        (b'{"input": ["ok", "  "]}', 422, "input[1] is empty"),
        (b'{"input": "\xff\xfe"}', 400, "not valid JSON"),
        (b"[" * 3000, 400, "RecursionError"),
        (b'{"input": "' + b"x" * 5000 + b'"}', 413, "at most 4096"),
        (json.dumps({"input": ["a"] * 9}).encode(), 413, "at most 8"),
    ]
    for raw, expected, fragment in cases:
        status, body = post(raw)
        assert (status, fragment in body["error"]["message"]) == (expected, True), (raw[:40], body)
        assert conn.sock is sock, f"the connection was dropped after {raw[:40]!r}"
    status, body = post(b'{"input": "a"}', headers={"Authorization": "Bearer wrong"})
    assert status == 401 and conn.sock is sock
    status, body = post(json.dumps({"input": TEXTS}).encode())
    assert status == 200 and len(body["data"]) == 3 and conn.sock is sock
    conn.close()


def test_model_and_internal_failures_hit_only_their_request():
    """A text the model chokes on fails its own request (500) while the request batched with it gets its
    vectors; an unexpected error outside the model is a 500 that keeps the connection too."""
    encoder = tiny_encoder("llama", max_length=64)
    recorder = Recorder(encoder)

    def choking_encode(texts, *args, **kwargs):
        if "explode" in texts:
            raise RuntimeError("the model choked")
        return recorder(texts, *args, **kwargs)

    encoder.encode = choking_encode
    original_tokenize = encoder.tokenize

    def fragile_tokenize(texts, instructions=None):
        if "tokenizer bug" in texts:
            raise KeyError("tokenizer bug")
        return original_tokenize(texts, instructions)

    encoder.tokenize = fragile_tokenize
    # 300 ms of waiting for company so the two requests below share one model call.
    with BackgroundServer(encoder, ServeSettings(model_name="tiny", max_wait_ms=300)) as url:
        results = {}

        def post(name, texts):
            results[name] = httpx.post(f"{url}/v1/embeddings", json={"input": texts}, timeout=30)

        threads = [threading.Thread(target=post, args=("bad", ["explode"])),
                   threading.Thread(target=post, args=("good", TEXTS))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results["bad"].status_code == 500 and "the model choked" in results["bad"].json()["error"]["message"]
        assert results["good"].status_code == 200
        np.testing.assert_allclose([d["embedding"] for d in results["good"].json()["data"]],
                                   recorder.original(TEXTS, normalize_embeddings=True), atol=1e-6)
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/v1/embeddings", body=b'{"input": "tokenizer bug"}')
        response = conn.getresponse()
        assert response.status == 500 and "KeyError" in json.loads(response.read())["error"]["message"]
        sock = conn.sock
        conn.request("POST", "/v1/embeddings", body=b'{"input": "A dog."}')
        response = conn.getresponse()
        assert response.status == 200 and len(json.loads(response.read())["data"]) == 1 and conn.sock is sock
        conn.close()
        assert answered(url, 500) == 2 and answered(url, 200) == 2


def test_disconnected_client_is_dropped_before_the_model():
    """A client sends 200 texts and closes the socket while the first piece is in the model: none of the
    other pieces is encoded, and the next 1-text request is the very next model call."""
    encoder = tiny_encoder("llama", max_length=64)
    recorder = Recorder(encoder, hold_first=True)
    texts = varied_texts(200)
    with BackgroundServer(encoder, ServeSettings(model_name="tiny", max_batch_tokens=64, max_wait_ms=0)) as url:
        sock = raw_post(url, json.dumps({"input": texts}).encode())
        assert recorder.entered.wait(30)
        sock.close()
        wait_until(lambda: answered(url, 499) == 1, "the server to notice the disconnect")
        recorder.gate.set()
        response = httpx.post(f"{url}/v1/embeddings", json={"input": "A dog."}, timeout=30)
        assert response.status_code == 200
        assert server_idle(url)
    first = recorder.calls[0]
    assert 1 < len(first) < len(texts) and first == texts[:len(first)]  # one 64-token piece
    assert recorder.calls == [first, ["A dog."]]


def server_idle(url: str) -> bool:
    health = httpx.get(f"{url}/health", timeout=10).json()
    return health["queued"] == 0


def test_large_request_delays_others_by_one_model_call():
    """A 100-text request is split into 64-token pieces; a 1-text request arriving while its first piece
    runs goes into the next model call, and the large request still gets every row in order."""
    encoder = tiny_encoder("llama", max_length=64)
    recorder = Recorder(encoder, hold_first=True)
    texts = varied_texts(100)
    results = {}

    def post(name, payload):
        results[name] = httpx.post(f"{url}/v1/embeddings", json={"input": payload}, timeout=60)

    with BackgroundServer(encoder, ServeSettings(model_name="tiny", max_batch_tokens=64, max_wait_ms=0)) as url:
        large = threading.Thread(target=post, args=("large", texts))
        large.start()
        assert recorder.entered.wait(30)
        small = threading.Thread(target=post, args=("small", "A dog."))
        small.start()
        wait_until(lambda: httpx.get(f"{url}/health", timeout=10).json()["queued"] == 2, "both requests to queue")
        recorder.gate.set()
        for thread in (small, large):
            thread.join(60)
    # The second call: the small request first, then at most the large one's next piece (if it fits).
    assert recorder.calls[1][0] == "A dog." and sum(call.count("A dog.") for call in recorder.calls) == 1
    assert sum(len(ids) for ids in encoder.tokenize(recorder.calls[1])[0]) <= 64
    pieces = [[t for t in call if t != "A dog."] for call in recorder.calls]
    assert [t for piece in pieces for t in piece] == texts and len(pieces) > 3
    assert all(r.status_code == 200 for r in results.values())
    expected = recorder.original(texts, normalize_embeddings=True)
    np.testing.assert_allclose([d["embedding"] for d in results["large"].json()["data"]], expected, atol=1e-5)


def test_request_timeout_is_504_and_drops_the_rest():
    encoder = tiny_encoder("llama", max_length=64)
    recorder = Recorder(encoder, hold_first=True)
    texts = varied_texts(100)
    settings = ServeSettings(model_name="tiny", max_batch_tokens=64, max_wait_ms=0, request_timeout=0.5)
    with BackgroundServer(encoder, settings) as url:
        response = httpx.post(f"{url}/v1/embeddings", json={"input": texts}, timeout=30)
        assert response.status_code == 504, response.text
        assert response.json()["error"]["message"] == "no answer within 0.5 s (--request-timeout)"
        recorder.gate.set()
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "A dog."}, timeout=30).status_code == 200
        # A body declared (100 bytes) but never sent whole is 408 after the same time.
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"input\": ")
            answer = http.client.HTTPResponse(sock)
            answer.begin()
            assert answer.status == 408
            assert json.loads(answer.read())["error"]["message"] == ("the request body did not arrive within 0.5 s "
                                                                     "(--request-timeout)")
    assert len(recorder.calls) == 2 and recorder.calls[1] == ["A dog."]


def test_split_into_pieces_and_a_text_no_call_can_hold(encoder):
    assert split([3, 3, 3, 5, 1], 6) == [(0, 2, 6), (2, 3, 3), (3, 5, 6)]
    assert split([9, 2], 6) == [(0, 1, 9), (1, 2, 2)]  # a lone text over the budget is a piece alone
    long_text = "Paris is the capital of France, Berlin the capital of Germany."
    n = len(encoder.tokenize([long_text])[0][0])
    with BackgroundServer(encoder, ServeSettings(model_name="tiny", max_batch_tokens=n - 1)) as url:
        response = httpx.post(f"{url}/v1/embeddings", json={"input": ["A dog.", long_text]}, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["message"] == (f"input[1] is {n} tokens; one model call takes at most "
                                                   f"{n - 1} (--max-batch-tokens)")


def test_api_key_guards_every_route_but_health(server):
    for path in ("/docs", "/redoc", "/openapi.json", "/metrics", "/v1/models", "/no/such/route"):
        response = httpx.get(f"{server}{path}", timeout=10)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key", path
    assert httpx.get(f"{server}/health", timeout=10).status_code == 200
    for path in ("/docs", "/openapi.json"):
        assert httpx.get(f"{server}{path}", headers=AUTH, timeout=10).status_code == 200, path
    assert ("decoder2vec_queue_depth",) in scrape(server, headers=AUTH)


def test_metrics_count_requests_batches_and_tokens(encoder):
    with BackgroundServer(encoder, ServeSettings(model_name="tiny")) as url:
        for body in (json.dumps({"input": TEXTS}), json.dumps({"input": "A dog."}), '{"input": ["ok", "\\ud800"]}'):
            httpx.post(f"{url}/v1/embeddings", content=body.encode(), timeout=30)
        seen = scrape(url)
        # A second app in the same process has its own registry: nothing counted there yet.
        other = create_app(encoder, ServeSettings())
        assert b"decoder2vec_inputs_total 0.0" in other.state.metrics.render()
    tokens = sum(len(ids) for ids in encoder.tokenize(TEXTS + ["A dog."])[0])
    assert seen[("decoder2vec_requests_total", ("path", "/v1/embeddings"), ("status", "200"))] == 2
    assert seen[("decoder2vec_requests_total", ("path", "/v1/embeddings"), ("status", "422"))] == 1
    assert seen[("decoder2vec_request_duration_seconds_count", ("path", "/v1/embeddings"))] == 3
    assert seen[("decoder2vec_inputs_total",)] == 4
    assert seen[("decoder2vec_tokens_total",)] == tokens
    assert seen[("decoder2vec_batch_texts_count",)] == 2 and seen[("decoder2vec_batch_texts_sum",)] == 4
    assert seen[("decoder2vec_batch_tokens_sum",)] == tokens
    assert seen[("decoder2vec_model_call_duration_seconds_count",)] == 2
    assert seen[("decoder2vec_queue_depth",)] == 0


def test_cli_refuses_bad_flags_before_the_model_load(capsys):
    """Each is one line naming the flag, and comes before the model (which does not exist) is looked at."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        cases = [
            (["--port", "70000"], "--port must be an integer in 1..65535, got 70000"),
            (["--port", "0"], "--port must be an integer in 1..65535, got 0"),
            (["--port", str(busy)], f"cannot serve on 127.0.0.1:{busy}: Address already in use"),
            (["--request-timeout", "0"], "request_timeout (--request-timeout) must be a number of seconds > 0"),
            (["--max-wait-ms", "-1"], "max_wait_ms (--max-wait-ms) must be a number >= 0, got -1.0"),
            (["--max-batch-tokens", "0"], "max_batch_tokens (--max-batch-tokens) must be an integer >= 1, got 0"),
            (["--max-length", "0"], "--max-length must be >= 1, got 0"),
            (["--threads", "0"], "--threads must be >= 1, got 0"),
            (["--backend", "onnx", "--compile"], "--compile/--device/--dtype apply to the torch backend, not "
                                                 "--backend onnx"),
        ]
        for flags, message in cases:
            assert main(["serve", "no/such/model", *flags]) == 2, flags
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and message in err, (flags, err)


def test_twenty_seconds_of_mixed_load_fail_no_good_request(encoder):
    """Well-behaved clients keep posting for a bounded 20 s while hostile ones send lone surrogates and
    hang up mid-request: every good request is answered 200 with the right vectors."""
    pool = varied_texts(24)
    expected = dict(zip(pool, encoder.encode(pool, normalize_embeddings=True)))
    settings = ServeSettings(model_name="tiny", max_batch_tokens=256, max_queue=64)
    good, bad, failures, hung_up = [], [], [], [0]

    async def well_behaved(url, seed, stop_at):
        rng = np.random.default_rng(seed)
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for _ in range(10_000):
                if time.monotonic() > stop_at:
                    return
                texts = [pool[i] for i in rng.integers(0, len(pool), int(rng.integers(1, 5)))]
                response = await http.post("/v1/embeddings", json={"input": texts})
                if response.status_code != 200:
                    failures.append((response.status_code, response.text[:200]))
                    continue
                got = np.array([d["embedding"] for d in response.json()["data"]])
                if not np.allclose(got, [expected[t] for t in texts], atol=1e-5):
                    failures.append("wrong vectors")
                good.append(len(texts))

    async def hostile(url, stop_at):
        host, port = url.removeprefix("http://").split(":")
        body = json.dumps({"input": pool * 4}).encode()
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for i in range(10_000):
                if time.monotonic() > stop_at:
                    return
                response = await http.post("/v1/embeddings", content=b'{"input": ["ok", "\\udc80"]}')
                bad.append(response.status_code)
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n"
                             .encode() + body)
                await writer.drain()
                await asyncio.sleep(0.02 * (i % 5))
                writer.close()
                hung_up[0] += 1

    async def scenario(url):
        stop_at = time.monotonic() + 20
        await asyncio.gather(*(well_behaved(url, seed, stop_at) for seed in range(6)), hostile(url, stop_at))

    with BackgroundServer(encoder, settings) as url:
        asyncio.run(scenario(url))
        assert server_idle(url)
        # Every hang-up is accounted for: cancelled (499) or, when the client was slower, answered.
        hostile_answered = answered(url, 200) - len(good)
        assert answered(url, 499) + hostile_answered == hung_up[0]
    assert failures == []
    assert len(good) > 20 and hung_up[0] > 5
    assert bad and set(bad) == {422}
