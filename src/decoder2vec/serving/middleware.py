"""Two plain ASGI middlewares around the whole app (so they see every route, /docs included).

Plain ASGI rather than Starlette's BaseHTTPMiddleware: that one runs the app in a separate task,
which hides the client's disconnect from the endpoint.
"""

from __future__ import annotations

import hmac
import logging
import time

from .errors import error_response
from .metrics import Metrics

log = logging.getLogger(__name__)

OPEN_PATHS = ("/health",)  # what answers without the API key: liveness probes carry no secrets


class RequireKey:
    """Every route but /health needs 'Authorization: Bearer KEY' (/docs, /openapi.json and
    /metrics describe the server to whoever asks, so they are protected too)."""

    def __init__(self, app, api_key: str | None):
        self.app, self.key = app, api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if self.key is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        # Constant-time comparison: response time must not reveal how much of a key was right.
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.key):
            response = error_response(401, "missing or incorrect API key (send 'Authorization: Bearer KEY')",
                                      code="invalid_api_key")
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class Observe:
    """Counts and times every answer by route and status, and answers 500 itself when an exception
    escapes the app. Starlette's own last-resort handler re-raises after its 500, and uvicorn then
    closes the connection: a client's next request on the same keep-alive connection would fail."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), None

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception as exc:
            if status is not None:  # the answer is half sent: nothing sound is left to say
                raise
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            await error_response(500, f"internal error: {type(exc).__name__}: {exc}"[:500])(
                scope, receive, send_and_note)
        finally:
            self.metrics.observe_request(scope["path"], status or 500, time.perf_counter() - start)
