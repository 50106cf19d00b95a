"""Other routes embed through the /v1/embeddings endpoint itself, so every limit, the token count,
the micro-batcher, the request timeout and the hang-up check are the same code, never a copy.

`call_embeddings` hands the endpoint an OpenAI-shaped body as if it had been sent to it, and
returns its answer as (status, JSON). A client's hang-up still reaches the endpoint: after the body,
its `receive` is the real request's.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import FastAPI, Request

from .errors import APIError
from .parsing import read_json

PATH = "/v1/embeddings"


async def read_body(request: Request, settings) -> dict | list | str | int | float | None:
    """The JSON body under --max-request-bytes and --request-timeout, as /v1/embeddings reads it."""
    try:
        return await asyncio.wait_for(read_json(request, settings.max_request_bytes), settings.request_timeout)
    except asyncio.TimeoutError:
        raise APIError(408, f"the request body did not arrive within {settings.request_timeout:g} s "
                            "(--request-timeout)", code="timeout") from None


async def call_embeddings(app: FastAPI, request: Request, body: dict) -> tuple[int, dict]:
    """(status, JSON answer) of /v1/embeddings for `body`; its errors come back in OpenAI's shape."""
    endpoint = next(route.endpoint for route in app.router.routes if getattr(route, "path", None) == PATH)
    data = json.dumps(body).encode()
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return await request.receive()

    headers = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"content-length"]
    scope = {**request.scope, "path": PATH, "headers": headers + [(b"content-length", str(len(data)).encode())]}
    try:
        response = await endpoint(Request(scope, receive))
    except APIError as exc:
        return exc.status, {"error": {"message": exc.message, "param": exc.param, "code": exc.code}}
    return response.status_code, json.loads(response.body)
