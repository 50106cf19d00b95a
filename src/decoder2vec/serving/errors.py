"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import json

from starlette.responses import Response

# status -> OpenAI's error type for it
_TYPES = {
    400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
    408: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
    499: "invalid_request_error", 500: "server_error", 503: "server_error", 504: "server_error",
}


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> Response:
        return error_response(self.status, self.message, param=self.param, code=self.code)


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> Response:
    body = {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}
    # ASCII JSON: a message that quotes the client's input (a lone surrogate, say) can always be
    # written; Starlette's JSONResponse encodes UTF-8 and would fail on exactly the bad input.
    return Response(json.dumps(body), status_code=status, headers=headers, media_type="application/json")
