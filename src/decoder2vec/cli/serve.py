"""decoder2vec serve [MODEL] [--host 127.0.0.1] [--port 8000] [--api-key KEY]"""

from __future__ import annotations

import os
from pathlib import Path

from ..backends import BACKENDS
from ..encoder import Encoder
from ..errors import Decoder2VecError
from ..model.loading import DEFAULT_MODEL, resolve_model
from ..search import Index
from ..serving import API_KEY_ENV, ServeSettings, check_bind, check_port, serve
from . import add_encode_options, add_max_length_argument, add_model_argument, add_speed_arguments


KEYWORDS_OF = (serve, ServeSettings, Encoder.from_pretrained)
CLI_ONLY = {}
# Flags named after an EncodeOptions field whose default is the server's own (tests/test_cli_names.py).
OWN_DEFAULTS = {"max_batch_tokens": "ServeSettings: the token budget of one model call over all batched requests, "
                                    "by device"}


def add_arguments(p):
    d = ServeSettings()
    add_model_argument(p, positional=True)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", dest="api_key", default=None,
                   help=f"require 'Authorization: Bearer KEY' on every route but /health "
                        f"(default: ${API_KEY_ENV} if set)")
    p.add_argument("--allow-insecure", dest="allow_insecure", action="store_true",
                   help="allow a non-loopback host without an API key")
    p.add_argument("--model-name", dest="model_name", default=None,
                   help="the id clients send as 'model' (default: the model's name)")
    p.add_argument("--max-inputs", dest="max_inputs", type=int, default=d.max_inputs, help="inputs per request")
    p.add_argument("--max-batch-tokens", dest="max_batch_tokens", type=int, default=d.max_batch_tokens,
                   help="tokens per model call, over all requests batched together; larger requests are "
                        "split into pieces of this size, so none holds the model for more than one call "
                        "(default: 8192 on a GPU; on a CPU 1024 or the model's max length if larger)")
    p.add_argument("--max-wait-ms", dest="max_wait_ms", type=float, default=d.max_wait_ms,
                   help="how long a request waits for others to batch with")
    p.add_argument("--max-queue", dest="max_queue", type=int, default=d.max_queue,
                   help="requests waiting for the model before the server answers 503 (with Retry-After)")
    p.add_argument("--max-request-bytes", dest="max_request_bytes", type=int, default=d.max_request_bytes,
                   help="larger request bodies get 413")
    p.add_argument("--request-timeout", dest="request_timeout", type=float, default=d.request_timeout,
                   help=f"seconds from arrival to answer, then 504 (default: {d.request_timeout:g})")
    p.add_argument("--max-input-chars", dest="max_input_chars", type=int, default=d.max_input_chars,
                   help="characters per input (instruction included); longer inputs get 413 before they are "
                        "tokenized (default: 100000, or 32 per token of the model's max length if more)")
    p.add_argument("--header-timeout", dest="header_timeout", type=float, default=d.header_timeout,
                   help=f"seconds a connection may take to send a request's headers, then it is closed "
                        f"(default: {d.header_timeout:g})")
    add_encode_options(p, ["batch_size"])
    p.add_argument("--truncate", action="store_true", help="cut inputs longer than max length (default: 413)")
    p.add_argument("--index", default=None,
                   help="an index folder (`decoder2vec index`) to answer POST /v1/search from; built with this model")
    add_max_length_argument(p)
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="what runs the model: torch (CPU/GPU), onnx or openvino (CPU; exported once, then "
                        "cached; a folder from `decoder2vec export --to onnx` is used as is)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the backend (default: all cores)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16")
    add_speed_arguments(p)
    p.add_argument("--trust-remote-code", dest="trust_remote_code", action="store_true",
                   help="run the model repository's own Python code (off by default)")


def model_name_for(model: str | None) -> str:
    if model is None:
        return DEFAULT_MODEL
    path = Path(model).expanduser()
    return path.resolve().name if path.exists() else model


def check_safetensors(model: str | None) -> None:
    """Serving never unpickles weights: a local folder must hold safetensors."""
    source = Path(resolve_model(model))
    if source.is_dir() and not any(source.glob("*.safetensors")):
        raise Decoder2VecError(f"{source} has no .safetensors weights; the server does not load pickled "
                               "(.bin/.pt) weights: convert them with save_pretrained(safe_serialization=True)")


def run(args):
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    # Every flag is checked before the model is even resolved (a hub id downloads) or loaded: a typo
    # costs a second, not a minute. Encoder.from_pretrained checks these too, but only later.
    if args.threads is not None and args.threads < 1:  # --max-length's least value is its flag's (add_keyword)
        raise Decoder2VecError(f"--threads must be >= 1, got {args.threads}")
    if args.backend != "torch" and (args.compile or args.device not in (None, "cpu") or args.dtype):
        raise Decoder2VecError(f"--compile/--device/--dtype apply to the torch backend, not --backend {args.backend}")
    settings = ServeSettings(
        model_name=args.model_name or model_name_for(args.model), api_key=api_key, max_inputs=args.max_inputs,
        max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        truncate=args.truncate, index=args.index, batch_size=args.batch_size, max_request_bytes=args.max_request_bytes,
        request_timeout=args.request_timeout, max_input_chars=args.max_input_chars,
        header_timeout=args.header_timeout,
    )
    check_bind(args.host, api_key, args.allow_insecure)
    check_port(args.host, args.port)
    check_safetensors(args.model)
    if args.index is not None:
        Index(args.index)  # not an index, unfinished or damaged: said before the model loads
    encoder = Encoder.from_pretrained(args.model, backend=args.backend, max_length=args.max_length,
                                      device=args.device, dtype=args.dtype, threads=args.threads,
                                      trust_remote_code=args.trust_remote_code, quantize=args.quantize,
                                      compile=args.compile, fast=args.fast)
    print(f"serving {settings.model_name!r} (dimension {encoder.dimension}, {encoder.backend.name} on {encoder.device}) "
          f"on http://{args.host}:{args.port}/v1 "
          f"{'with' if api_key else 'without'} an API key; metrics at /metrics")
    serve(encoder, host=args.host, port=args.port, settings=settings, allow_insecure=args.allow_insecure)
