"""Text Embeddings Inference's routes, so tools that speak TEI (LangChain's, Haystack's and
LlamaIndex's TEI embedders, `huggingface_hub.InferenceClient.feature_extraction`) use decoder2vec
unchanged: `POST /embed` (also at `/` and `/invocations`, as TEI) and `GET /info`, with TEI's
request, answer and error shapes (TEI's docs/openapi.json). Error statuses are this server's
(422 for a bad input, 413 for too large, 429 overloaded, 424 a failed model call); the body is
TEI's {"error", "error_type"}.

/embed embeds through /v1/embeddings (embed_call.py): the same limits, batcher, timeout and API key.
Vectors are unit length, as TEI's default `normalize: true`; `normalize: false` is refused (this
server returns unit vectors only), as is `truncate: true` on a server started without --truncate,
a `prompt_name` (the model has no named prompts here; send an instruction through /v1/embeddings)
and token-id inputs.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .embed_call import call_embeddings, read_body
from .errors import APIError
from .settings import ServeSettings, batch_tokens_for

# TEI answers errors as {"error": message, "error_type": kind}; the status codes are TEI's own.
_TEI_STATUS = {503: 429, 500: 424}  # overloaded -> 429, a failed model call -> 424
_TEI_TYPES = {429: "Overloaded", 424: "Backend", 401: "Unhealthy"}
_DIRECTIONS = ("right", "Right")


def tei_error(status: int, message: str) -> JSONResponse:
    status = _TEI_STATUS.get(status, status)
    return JSONResponse({"error": message, "error_type": _TEI_TYPES.get(status, "Validation")}, status_code=status)


def _version() -> str:
    try:
        return version("decoder2vec")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def add_tei_routes(app: FastAPI, encoder, settings: ServeSettings) -> None:
    info = {
        "model_id": settings.model_name, "model_sha": None, "model_dtype": str(encoder.backend.weights),
        "model_type": {"embedding": {"pooling": encoder.pooling}},
        "max_concurrent_requests": settings.max_queue, "max_input_length": encoder.max_length,
        "max_batch_tokens": batch_tokens_for(settings, encoder.device.type, encoder.max_length),
        "max_batch_requests": None, "max_client_batch_size": settings.max_inputs,
        "auto_truncate": settings.truncate, "tokenization_workers": 1, "version": _version(),
        "sha": None, "docker_label": None,
    }

    @app.get("/info")
    async def tei_info():
        return info

    # TEI serves an embedding model's /embed at "/" and "/invocations" too (huggingface_hub's
    # InferenceClient posts to the URL it is given, i.e. "/").
    @app.post("/embed")
    @app.post("/")
    @app.post("/invocations")
    async def tei_embed(request: Request):
        try:
            body = await read_body(request, settings)
            openai_body = _openai_body(body, settings)
        except APIError as exc:
            return tei_error(exc.status, exc.message)
        status, answer = await call_embeddings(app, request, openai_body)
        if status != 200:
            return tei_error(status, answer["error"]["message"])
        return JSONResponse([row["embedding"] for row in answer["data"]])


def _openai_body(body, settings: ServeSettings) -> dict:
    if not isinstance(body, dict):
        raise APIError(422, "the request body must be a JSON object with 'inputs'")
    if "inputs" not in body:
        raise APIError(422, "'inputs' is required: a string or a list of strings")
    if body.get("normalize", True) is not True:
        raise APIError(422, f"normalize={body['normalize']!r}: this server returns unit vectors only "
                            "(normalize: true, TEI's default)")
    if body.get("truncate") and not settings.truncate:
        raise APIError(422, "truncate: true needs a server started with --truncate; this one refuses inputs "
                            "over the model's max length (413)")
    if body.get("truncation_direction", "right") not in _DIRECTIONS:
        raise APIError(422, f"truncation_direction {body['truncation_direction']!r} is not supported; inputs are "
                            "cut on the right")
    if body.get("prompt_name") is not None:
        raise APIError(422, f"prompt_name {body['prompt_name']!r:.60}: this model has no named prompts; send an "
                            "'instruction' to /v1/embeddings instead")
    out = {"input": body["inputs"]}
    if body.get("dimensions") is not None:
        out["dimensions"] = body["dimensions"]
    return out
