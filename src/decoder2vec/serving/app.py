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

    batch_tokens = batch_tokens_for(settings, encoder.device.type, encoder.max_length)
    input_chars = input_chars_for(settings, encoder.max_length)
    warned_dims: set[int] = set()

    def untrained_dims(dims: int | None) -> str | None:
        """encode's warning for a `dimensions` the model was not trained for: in the log once per
        size, and in every answer that uses it."""
        message = untrained_dim_warning(encoder.config, dims, name="dimensions")
        if message and dims not in warned_dims:
            warned_dims.add(dims)
            log.warning(message)
        return message
    batcher = MicroBatcher(encode, max_batch_tokens=batch_tokens, max_wait_ms=settings.max_wait_ms,
                           max_queue=settings.max_queue)
    metrics = Metrics(queue_depth=lambda: batcher.queued)
    batcher.observe = metrics.observe_batch

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
    app.state.metrics = metrics
    # Added last = outermost: Observe sees every answer, the 401s of RequireKey included.
    app.add_middleware(RequireKey, api_key=settings.api_key)
    app.add_middleware(Observe, metrics=metrics)
    created = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return error_response(422, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        return error_response(exc.status_code, str(exc.detail))

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

    async def count_tokens(req: Parsed) -> list[int]:
        # Before any tokenizing, and by length alone: an over-long input costs nothing.
        for i, (text, instruction) in enumerate(zip(req.texts, req.instructions)):
            if len(text) + len(instruction or "") > input_chars:
                raise APIError(413, f"input[{i}] is {len(text) + len(instruction or '')} characters (instruction "
                                    f"included); at most {input_chars} per input (--max-input-chars)", param="input",
                               code="input_too_long")
        loop = asyncio.get_running_loop()
        ids, masks, _ = await loop.run_in_executor(count_pool, counter.tokenize, req.texts, req.instructions)
        for i, (row, mask) in enumerate(zip(ids, masks)):
            # e.g. text a tokenizer drops: the mean of no tokens would be a silent zero vector
            if not len(row) or (encoder.pooling in ("mean", "weighted_mean") and not mask.any()):
                raise APIError(422, f"input[{i}] has no tokens to embed ({req.texts[i]!r:.40})", param="input")
        lengths = [len(x) for x in ids]
        limit = encoder.max_length
        if settings.truncate:
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
            vectors = job.result()
        except Overloaded as exc:
            return error_response(503, f"server overloaded: {exc}; retry later", code="server_overloaded",
                                  headers={"Retry-After": "1"})
        except Decoder2VecError as exc:  # the Encoder refused this request's input
            return error_response(422, str(exc), param="input")
        except Exception as exc:
            log.error("the model call failed: %s: %s", type(exc).__name__, exc)
            return error_response(500, f"the model call failed: {type(exc).__name__}: {exc}"[:500])
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

    add_tei_routes(app, encoder, settings)  # POST /embed, GET /info (tei.py)
    if settings.index is not None:  # POST /v1/search (search_route.py)
        add_search_route(app, open_index(settings.index, encoder), settings)
    return app
