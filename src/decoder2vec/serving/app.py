"""The FastAPI app: OpenAI's /v1/embeddings and /v1/models, plus /health.

Vectors are L2-normalised (OpenAI returns unit vectors); `dimensions` truncates first and then
renormalises (Matryoshka), exactly like `Encoder.encode(normalize_embeddings=True, truncate_dim=d)`.
Extension: an `instruction` field (a string, or one string/null per input) is placed before each
input with the encoder's instruction template and is not pooled.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batcher import MicroBatcher, Overloaded
from .errors import APIError, error_response


@dataclass
class ServeSettings:
    """How the server behaves; every field is a `decoder2vec serve` flag of the same name."""

    model_name: str = "decoder2vec"
    api_key: str | None = None
    max_inputs: int = 2048  # inputs per request (OpenAI's limit)
    max_batch_tokens: int = 8192  # tokens per model call, summed over the requests batched together
    max_wait_ms: float = 5.0  # how long a lone request waits for company
    max_queue: int = 256  # requests waiting for the model; more get 503
    truncate: bool = False  # cut inputs longer than max_length instead of answering 413
    max_request_bytes: int = 16 * 2**20  # larger bodies get 413 before they are read whole
    batch_size: int = 32  # Encoder.encode's batch size inside one model call


@dataclass
class _Parsed:
    texts: list[str]
    instructions: list[str | None]
    encoding_format: str
    dimensions: int | None


def parse_request(body, settings: ServeSettings, dimension: int) -> _Parsed:
    if not isinstance(body, dict):
        raise APIError(422, "the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != settings.model_name:
        raise APIError(404, f"model {model!r} not found; this server serves {settings.model_name!r}",
                       param="model", code="model_not_found")
    texts = _parse_input(body.get("input"), settings.max_inputs)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise APIError(422, f"encoding_format must be 'float' or 'base64', got {fmt!r}", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or not 0 < dims <= dimension):
        raise APIError(422, f"dimensions must be an integer in 1..{dimension}, got {dims!r}", param="dimensions")
    return _Parsed(texts, _parse_instruction(body.get("instruction"), len(texts)), fmt, dims)


def _parse_input(value, max_inputs: int) -> list[str]:
    if value is None:
        raise APIError(422, "'input' is required: a string or a list of strings", param="input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list):
        raise APIError(422, f"'input' must be a string or a list of strings, got {type(value).__name__}",
                       param="input")
    if not texts:
        raise APIError(422, "'input' is an empty list", param="input")
    if len(texts) > max_inputs:
        raise APIError(413, f"'input' has {len(texts)} items; at most {max_inputs} per request", param="input",
                       code="too_many_inputs")
    for i, text in enumerate(texts):
        if isinstance(text, (int, list)) and not isinstance(text, bool):
            raise APIError(422, "token arrays are not supported; send the text as strings", param="input",
                           code="token_input_unsupported")
        if not isinstance(text, str):
            raise APIError(422, f"input[{i}] is {type(text).__name__}, not a string", param="input")
        if not text:  # nothing to pool; whitespace is text and is embedded like any other
            raise APIError(422, f"input[{i}] is an empty string", param="input")
    return texts


def _parse_instruction(value, n: int) -> list[str | None]:
    if value is None or isinstance(value, str):
        return [value or None] * n
    if isinstance(value, list) and len(value) == n and all(v is None or isinstance(v, str) for v in value):
        return [v or None for v in value]
    raise APIError(422, f"'instruction' must be a string, null, or a list of {n} strings/nulls (one per input)",
                   param="instruction")


def _normalise(vectors: np.ndarray, dims: int | None) -> np.ndarray:
    vectors = vectors[:, :dims] if dims else vectors
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _encode_vector(vector: np.ndarray, fmt: str):
    if fmt == "base64":  # OpenAI: little-endian float32 bytes, base64
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is {declared} bytes; at most {limit}", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():  # chunked uploads have no content-length
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the request body is over {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(encoder, settings: ServeSettings | None = None) -> FastAPI:
    """The app for one Encoder. Run it with uvicorn (see `serving.serve`)."""
    settings = settings or ServeSettings()
    dimension = encoder.dimension
    # Counting tokens needs the tokenizer while the worker thread may be using it inside encode();
    # HF fast tokenizers are not safe to share across threads, so the counter gets its own copy.
    # Its max_length is unlimited so it reports the true length of an over-long input.
    counter = copy.copy(encoder)
    counter.tokenizer = copy.deepcopy(encoder.tokenizer)
    counter.config = dataclasses.replace(encoder.config, max_length=2**62)
    count_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decoder2vec-tokens")

    def encode(texts, instructions):
        return encoder.encode(texts, instruction=instructions, batch_size=settings.batch_size)

    batcher = MicroBatcher(encode, max_batch_tokens=settings.max_batch_tokens, max_wait_ms=settings.max_wait_ms,
                           max_queue=settings.max_queue)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.close()
            count_pool.shutdown(wait=True)

    app = FastAPI(title="decoder2vec", description="OpenAI-compatible embeddings", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.settings = settings
    created = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return error_response(422, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):
        return error_response(500, f"the model call failed: {type(exc).__name__}: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        return error_response(exc.status_code, str(exc.detail))

    def check_key(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        # Constant-time comparison: response time must not reveal how much of a key was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "missing or incorrect API key (send 'Authorization: Bearer KEY')",
                           code="invalid_api_key")

    @app.get("/health")
    async def health():
        return {"status": "ok" if batcher.alive else "stopped", "model": settings.model_name,
                "dimension": dimension, "queued": batcher.queued, "batches": batcher.batches,
                "requests": batcher.requests}

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        return {"object": "list", "data": [
            {"id": settings.model_name, "object": "model", "created": created, "owned_by": "decoder2vec"}]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        check_key(request)
        try:
            body = json.loads(await _read_body(request, settings.max_request_bytes))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"the request body is not valid JSON: {exc}") from None
        req = parse_request(body, settings, dimension)
        loop = asyncio.get_running_loop()
        ids, masks, _ = await loop.run_in_executor(count_pool, counter.tokenize, req.texts, req.instructions)
        for i, (row, mask) in enumerate(zip(ids, masks)):
            # e.g. whitespace a tokenizer drops: the mean of no tokens would be a silent zero vector
            if not len(row) or (encoder.pooling in ("mean", "weighted_mean") and not mask.any()):
                raise APIError(422, f"input[{i}] has no tokens to embed ({req.texts[i]!r:.40})", param="input")
        lengths = [len(x) for x in ids]
        limit = encoder.max_length
        if settings.truncate:
            lengths = [min(n, limit) for n in lengths]
        else:
            for i, n in enumerate(lengths):
                if n > limit:
                    raise APIError(413, f"input[{i}] is {n} tokens (instruction included); this model takes at "
                                        f"most {limit} (the server can truncate: --truncate)", param="input",
                                   code="context_length_exceeded")
        try:
            vectors = await batcher.submit(req.texts, req.instructions, sum(lengths))
        except Overloaded as exc:
            return error_response(503, f"server overloaded: {exc}; retry later", code="server_overloaded",
                                  headers={"Retry-After": "1"})
        vectors = _normalise(vectors, req.dimensions)
        tokens = sum(lengths)
        return JSONResponse({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": _encode_vector(v, req.encoding_format)}
                     for i, v in enumerate(vectors)],
            "model": settings.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    return app
