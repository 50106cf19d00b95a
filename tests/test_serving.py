"""The OpenAI-compatible server, driven by the real `openai` client over loopback."""

import asyncio
import threading
import time

import httpx
import numpy as np
import openai
import pytest
from tiny import tiny_encoder

from decoder2vec import Decoder2VecError
from decoder2vec.cli import main
from decoder2vec.serving import BackgroundServer, MicroBatcher, ServeSettings, check_bind

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
    import base64

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
    import base64

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
    import signal
    import subprocess
    import sys

    from decoder2vec.serving.server import free_port

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
