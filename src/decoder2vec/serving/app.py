"""The FastAPI app: OpenAI's /v1/embeddings and /v1/models, plus /health and /metrics.

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
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..encode_options import EncodeOptions
from ..errors import Decoder2VecError
from ..folder.trained_dims import untrained_dim_warning
from .batcher import MicroBatcher, Overloaded
from .errors import APIError, error_response
from .metrics import Metrics
from .middleware import Observe, RequireKey
from .parsing import CLIENT_CLOSED, Parsed, parse_request, read_json
from .search_route import add_search_route, open_index
from .settings import ServeSettings, batch_tokens_for, input_chars_for
from .tei import add_tei_routes

log = logging.getLogger(__name__)


def _normalise(vectors: np.ndarray, dims: int | None) -> np.ndarray:
    vectors = vectors[:, :dims] if dims else vectors
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _encode_vector(vector: np.ndarray, fmt: str):
    if fmt == "base64":  # OpenAI: little-endian float32 bytes, base64
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


async def _client_gone(request: Request) -> None:
    """Returns when the client closes the connection. The body is read by now, so the server's
    next message for this request can only be the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(encoder, settings: ServeSettings | None = None) -> FastAPI:
    """The app for one Encoder. Run it with uvicorn (see `serving.serve`)."""
    settings = settings or ServeSettings()
    batch_tokens = batch_tokens_for(settings, encoder.device.type, encoder.max_length)
    batcher = MicroBatcher(model_call(encoder, settings), max_batch_tokens=batch_tokens,
                           max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue)
    metrics = Metrics(queue_depth=lambda: batcher.queued)
    batcher.observe = metrics.observe_batch
    count_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decoder2vec-tokens")

    app = FastAPI(title="decoder2vec", description="OpenAI-compatible embeddings",
                  lifespan=_lifespan(batcher, count_pool))
    app.state.batcher = batcher
    app.state.settings = settings
    app.state.metrics = metrics
    # Added last = outermost: Observe sees every answer, the 401s of RequireKey included.
    app.add_middleware(RequireKey, api_key=settings.api_key)
    app.add_middleware(Observe, metrics=metrics)
    _add_error_handlers(app)
    _add_status_routes(app, settings, batcher, metrics, encoder.dimension, batch_tokens)
    _add_embeddings_route(app, settings, batcher, metrics, encoder.dimension,
                          TokenCounter(encoder, settings, batch_tokens, count_pool), UntrainedDims(encoder.config))
    add_tei_routes(app, encoder, settings)  # POST /embed, GET /info (tei.py)
    if settings.index is not None:  # POST /v1/search (search_route.py)
        add_search_route(app, open_index(settings.index, encoder), settings)
    return app


def model_call(encoder, settings: ServeSettings):
    """The batcher's call into the model: the server's EncodeOptions, with each text's instruction."""
    options = EncodeOptions(batch_size=settings.batch_size)

    def encode(texts, instructions):
        return encoder.encode(texts, options, instruction=instructions)
    return encode


def _lifespan(batcher: MicroBatcher, count_pool: ThreadPoolExecutor):
    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.close()
            count_pool.shutdown(wait=True)
    return lifespan


def _add_error_handlers(app: FastAPI) -> None:
    """Every error, FastAPI's own included, in OpenAI's error shape (errors.py)."""
    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return error_response(422, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        return error_response(exc.status_code, str(exc.detail))


def _add_status_routes(app: FastAPI, settings: ServeSettings, batcher: MicroBatcher, metrics: Metrics,
                       dimension: int, batch_tokens: int) -> None:
    """GET /health, /metrics (Prometheus) and /v1/models."""
    created = int(time.time())

    @app.get("/health")
    async def health():
        return {"status": "ok" if batcher.alive else "stopped", "model": settings.model_name,
                "dimension": dimension, "max_batch_tokens": batch_tokens, "queued": batcher.queued, "batches": batcher.batches,
                "requests": batcher.requests}

    @app.get("/metrics")
    async def prometheus_metrics():
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [
            {"id": settings.model_name, "object": "model", "created": created, "owned_by": "decoder2vec"}]}


class UntrainedDims:
    """encode's warning for a `dimensions` the model was not trained for: in the log once per size,
    and in every answer that uses it."""

    def __init__(self, config):
        self.config, self.warned = config, set()

    def __call__(self, dims: int | None) -> str | None:
        message = untrained_dim_warning(self.config, dims, name="dimensions")
        if message and dims not in self.warned:
            self.warned.add(dims)
            log.warning(message)
        return message


class TokenCounter:
    """Each input's tokens, counted before it is queued: an input too long for the model or for one
    model call is refused (413) here, one with no token to embed too (422)."""

    def __init__(self, encoder, settings: ServeSettings, batch_tokens: int, pool: ThreadPoolExecutor):
        # Counting tokens needs the tokenizer while the worker thread may be using it inside encode();
        # HF fast tokenizers are not safe to share across threads, so the counter gets its own copy.
        # Its max_length is unlimited so it reports the true length of an over-long input.
        counter = copy.copy(encoder)
        counter.tokenizer = copy.deepcopy(encoder.tokenizer)
        counter.config = dataclasses.replace(encoder.config, max_length=2**62)
        self.counter, self.encoder, self.settings, self.batch_tokens, self.pool = (
            counter, encoder, settings, batch_tokens, pool)
        self.input_chars = input_chars_for(settings, encoder.max_length)

    async def __call__(self, req: Parsed) -> list[int]:
        encoder, input_chars, batch_tokens = self.encoder, self.input_chars, self.batch_tokens
        # Before any tokenizing, and by length alone: an over-long input costs nothing.
        for i, (text, instruction) in enumerate(zip(req.texts, req.instructions)):
            if len(text) + len(instruction or "") > input_chars:
                raise APIError(413, f"input[{i}] is {len(text) + len(instruction or '')} characters (instruction "
                                    f"included); at most {input_chars} per input (--max-input-chars)", param="input",
                               code="input_too_long")
        loop = asyncio.get_running_loop()
        ids, masks, _ = await loop.run_in_executor(self.pool, self.counter.tokenize, req.texts, req.instructions)
        for i, (row, mask) in enumerate(zip(ids, masks)):
            # e.g. text a tokenizer drops: the mean of no tokens would be a silent zero vector
            if not len(row) or (encoder.pooling in ("mean", "weighted_mean") and not mask.any()):
                raise APIError(422, f"input[{i}] has no tokens to embed ({req.texts[i]!r:.40})", param="input")
        lengths = [len(x) for x in ids]
        limit = encoder.max_length
        if self.settings.truncate:
            lengths = [min(n, limit) for n in lengths]
        for i, n in enumerate(lengths):
            if n > limit:
                raise APIError(413, f"input[{i}] is {n} tokens (instruction included); this model takes at "
                                    f"most {limit} (the server can truncate: --truncate)", param="input",
                               code="context_length_exceeded")
            if n > batch_tokens:  # a piece is at least one text: it could not be split
                raise APIError(413, f"input[{i}] is {n} tokens; one model call takes at most "
                                    f"{batch_tokens} (--max-batch-tokens)", param="input",
                               code="context_length_exceeded")
        return lengths


def _add_embeddings_route(app: FastAPI, settings: ServeSettings, batcher: MicroBatcher, metrics: Metrics,
                          dimension: int, count_tokens: TokenCounter, untrained_dims: UntrainedDims) -> None:
    """POST /v1/embeddings: read and check the request, count its tokens, queue it, answer."""
    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        deadline = time.monotonic() + settings.request_timeout
        try:  # a client that declares a body and never sends it must not hold a request open forever
            body = await asyncio.wait_for(read_json(request, settings.max_request_bytes), settings.request_timeout)
        except asyncio.TimeoutError:
            return error_response(408, f"the request body did not arrive within {settings.request_timeout:g} s "
                                       "(--request-timeout)", code="timeout")
        req = parse_request(body, settings, dimension)
        warning = untrained_dims(req.dimensions)
        lengths = await count_tokens(req)
        vectors = await _vectors(batcher, req, lengths, request, deadline, settings)
        if isinstance(vectors, Response):
            return vectors
        vectors = _normalise(vectors, req.dimensions)
        tokens = sum(lengths)
        metrics.inputs.inc(len(req.texts))
        metrics.tokens.inc(tokens)
        answer = {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": _encode_vector(v, req.encoding_format)}
                     for i, v in enumerate(vectors)],
            "model": settings.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if warning:  # an extra field: OpenAI clients ignore it, a reader of the JSON sees it
            answer["warning"] = warning
        return JSONResponse(answer)


async def _vectors(batcher: MicroBatcher, req: Parsed, lengths: list[int], request: Request, deadline: float,
                   settings: ServeSettings) -> np.ndarray | Response:
    """The request's vectors from the batcher, or the error answer: the client left, the deadline
    passed, the server is overloaded, or the model refused or failed."""
    job = asyncio.ensure_future(batcher.submit(req.texts, req.instructions, lengths))
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        done, _ = await asyncio.wait({job, gone}, timeout=max(deadline - time.monotonic(), 0),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if job not in done:
        job.cancel()  # the request's pieces not yet in a model call are dropped
        if gone in done:  # nobody will read this answer; it is for the logs and metrics
            return error_response(CLIENT_CLOSED, "the client closed the connection", code="client_closed")
        return error_response(504, f"no answer within {settings.request_timeout:g} s (--request-timeout)",
                              code="timeout")
    try:
        return job.result()
    except Overloaded as exc:
        return error_response(503, f"server overloaded: {exc}; retry later", code="server_overloaded",
                              headers={"Retry-After": "1"})
    except Decoder2VecError as exc:  # the Encoder refused this request's input
        return error_response(422, str(exc), param="input")
    except Exception as exc:
        log.error("the model call failed: %s: %s", type(exc).__name__, exc)
        return error_response(500, f"the model call failed: {type(exc).__name__}: {exc}"[:500])
