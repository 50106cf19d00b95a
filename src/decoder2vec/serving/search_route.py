"""`POST /v1/search` over the index given at start (`decoder2vec serve MODEL --index DB`).

Request: {"query": "text", "k": 10}. Answer: {"object": "list", "model": ..., "data": [{"rank", "id",
"score", "text", carried columns...}]}. The query is embedded through /v1/embeddings (embed_call.py:
the same API key, limits, batcher and timeout) with the index's query instruction and truncate_dim,
then searched in a worker thread (LanceDB's search blocks).
"""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..errors import Decoder2VecError
from ..model.precision import CALIBRATED
from ..search import Index, check_k, check_queries
from .embed_call import call_embeddings, read_body
from .errors import APIError, error_response
from .settings import ServeSettings

MAX_K = 1000


def open_index(path, encoder) -> Index:
    """The index, checked against the served Encoder before the server starts."""
    index = Index(path)
    index.check_encoder(encoder)
    options = index.record["options"]
    if options.get("precision") in CALIBRATED and not options.get("normalize_embeddings"):
        # /v1/embeddings returns unit vectors; int8 levels of an unnormalised corpus need raw ones.
        raise Decoder2VecError(f"{path}: the server searches int8/uint8 indexes of normalised vectors only; encode "
                               "the corpus with --normalize-embeddings")
    return index


def add_search_route(app: FastAPI, index: Index, settings: ServeSettings) -> None:
    truncate_dim = index.record["options"].get("truncate_dim")

    @app.post("/v1/search")
    async def search(request: Request):
        body = await read_body(request, settings)
        query, k = _parse(body)
        embed = {"input": query, "instruction": index.query_instruction}
        if truncate_dim:
            embed["dimensions"] = truncate_dim
        status, answer = await call_embeddings(app, request, embed)
        if status != 200:
            error = answer["error"]
            return error_response(status, error["message"], param="query" if error.get("param") else None,
                                  code=error.get("code"))
        vector = np.asarray(answer["data"][0]["embedding"], np.float32)
        loop = asyncio.get_running_loop()
        try:
            hits = await loop.run_in_executor(None, lambda: index.search_vector(vector, k=k))
        except Decoder2VecError as exc:  # a table damaged since the start
            return error_response(500, str(exc))
        return JSONResponse({"object": "list", "model": settings.model_name,
                             "data": [{"rank": rank, **hit.to_dict()} for rank, hit in enumerate(hits, 1)]})


def _parse(body) -> tuple[str, int]:
    if not isinstance(body, dict):
        raise APIError(422, "the request body must be a JSON object with 'query'")
    try:
        query = check_queries(body.get("query"))
        if len(query) != 1:
            raise Decoder2VecError("'query' must be one string")
    except Decoder2VecError as exc:
        raise APIError(422, str(exc), param="query") from None
    k = body.get("k", 10)
    try:
        check_k(k)
    except Decoder2VecError as exc:
        raise APIError(422, str(exc), param="k") from None
    if k > MAX_K:
        raise APIError(422, f"k is at most {MAX_K}, got {k}", param="k")
    return query[0], k
