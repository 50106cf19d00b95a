"""Reading and checking an embeddings request: every client mistake becomes an APIError (4xx)
naming the field and index, before anything reaches the tokenizer or the model."""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request

from .errors import APIError
from .settings import ServeSettings

# nginx's code for "the client closed the connection before the answer": used in logs and metrics.
CLIENT_CLOSED = 499


@dataclass
class Parsed:
    texts: list[str]
    instructions: list[str | None]
    encoding_format: str
    dimensions: int | None


async def read_json(request: Request, limit: int):
    """The body as JSON, refusing bodies over `limit` bytes before they are read whole."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is {declared} bytes; at most {limit} (--max-request-bytes)",
                       code="request_too_large")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():  # chunked uploads have no content-length
            size += len(chunk)
            if size > limit:
                raise APIError(413, f"the request body is over {limit} bytes (--max-request-bytes)",
                               code="request_too_large")
            chunks.append(chunk)
    except ClientDisconnect:
        raise APIError(CLIENT_CLOSED, "the client closed the connection while sending the body") from None
    try:
        return json.loads(b"".join(chunks))
    # ValueError covers malformed JSON, bytes that are not UTF-8 and integers too long to parse;
    # RecursionError a hostile nesting depth.
    except (ValueError, RecursionError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {type(exc).__name__}: {exc}"[:300]) from None


def parse_request(body, settings: ServeSettings, dimension: int) -> Parsed:
    if not isinstance(body, dict):
        raise APIError(422, "the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != settings.model_name:
        raise APIError(404, f"model {model!r:.100} not found; this server serves {settings.model_name!r}",
                       param="model", code="model_not_found")
    texts = _parse_input(body.get("input"), settings.max_inputs)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise APIError(422, f"encoding_format must be 'float' or 'base64', got {fmt!r:.100}", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or not 0 < dims <= dimension):
        raise APIError(422, f"dimensions must be an integer in 1..{dimension}, got {dims!r:.100}", param="dimensions")
    return Parsed(texts, _parse_instruction(body.get("instruction"), len(texts)), fmt, dims)


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
        raise APIError(413, f"'input' has {len(texts)} items; at most {max_inputs} per request (--max-inputs)",
                       param="input", code="too_many_inputs")
    for i, text in enumerate(texts):
        if isinstance(text, (int, list)) and not isinstance(text, bool):
            raise APIError(422, "token arrays are not supported; send the text as strings", param="input",
                           code="token_input_unsupported")
        if not isinstance(text, str):
            raise APIError(422, f"input[{i}] is {type(text).__name__}, not a string", param="input")
        # The team-wide empty-text policy (Encoder.encode(on_empty="error")): nothing to pool is an
        # error naming the index, never a zero vector.
        if not text.strip():
            raise APIError(422, f"input[{i}] is empty (whitespace only counts as empty)", param="input")
        _check_unicode(text, f"input[{i}]", "input")
    return texts


def _parse_instruction(value, n: int) -> list[str | None]:
    if value is None or isinstance(value, str):
        instructions = [value or None] * n
    elif isinstance(value, list) and len(value) == n and all(v is None or isinstance(v, str) for v in value):
        instructions = [v or None for v in value]
    else:
        raise APIError(422, f"'instruction' must be a string, null, or a list of {n} strings/nulls (one per input)",
                       param="instruction")
    for i, instruction in enumerate(instructions):
        if instruction is not None:
            _check_unicode(instruction, "instruction" if isinstance(value, str) else f"instruction[{i}]",
                           "instruction")
    return instructions


def _check_unicode(text: str, where: str, param: str) -> None:
    """JSON's \\uD800-style escapes can carry lone surrogates, which are not Unicode text: no
    tokenizer can read them (they used to reach it and come back as a 500)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise APIError(422, f"{where} is not valid Unicode: a lone surrogate U+{ord(text[exc.start]):04X} at "
                            f"character {exc.start}", param=param, code="invalid_unicode") from None
