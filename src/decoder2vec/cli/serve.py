"""decoder2vec serve [MODEL] [--host 127.0.0.1] [--port 8000] [--api-key KEY]"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import Decoder2VecError
from . import add_model_argument, add_speed_arguments


def add_arguments(p):
    from ..serving import API_KEY_ENV, ServeSettings

    d = ServeSettings()
    add_model_argument(p, positional=True)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", dest="api_key", default=None,
                   help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV} if set)")
    p.add_argument("--allow-insecure", dest="allow_insecure", action="store_true",
                   help="allow a non-loopback host without an API key")
    p.add_argument("--model-name", dest="model_name", default=None,
                   help="the id clients send as 'model' (default: the model's name)")
    p.add_argument("--max-inputs", dest="max_inputs", type=int, default=d.max_inputs, help="inputs per request")
    p.add_argument("--max-batch-tokens", dest="max_batch_tokens", type=int, default=d.max_batch_tokens,
                   help="tokens per model call, over all requests batched together")
    p.add_argument("--max-wait-ms", dest="max_wait_ms", type=float, default=d.max_wait_ms,
                   help="how long a request waits for others to batch with")
    p.add_argument("--max-queue", dest="max_queue", type=int, default=d.max_queue,
                   help="requests waiting for the model before the server answers 503")
    p.add_argument("--max-request-bytes", dest="max_request_bytes", type=int, default=d.max_request_bytes,
                   help="larger request bodies get 413")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=d.batch_size)
    p.add_argument("--truncate", action="store_true", help="cut inputs longer than max length (default: 413)")
    p.add_argument("--max-length", dest="max_length", type=int, default=None)
    p.add_argument("--onnx", action="store_true",
                   help="run the folder's onnx/model.onnx with onnxruntime on CPU (decoder2vec export --to onnx)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16")
    add_speed_arguments(p)
    p.add_argument("--trust-remote-code", dest="trust_remote_code", action="store_true",
                   help="run the model repository's own Python code (off by default)")


def model_name_for(model: str | None) -> str:
    from ..loading import DEFAULT_MODEL

    if model is None:
        return DEFAULT_MODEL
    path = Path(model).expanduser()
    return path.resolve().name if path.exists() else model


def check_safetensors(model: str | None) -> None:
    """Serving never unpickles weights: a local folder must hold safetensors."""
    from ..loading import resolve_model

    source = Path(resolve_model(model))
    if source.is_dir() and not any(source.glob("*.safetensors")):
        raise Decoder2VecError(f"{source} has no .safetensors weights; the server does not load pickled "
                               "(.bin/.pt) weights: convert them with save_pretrained(safe_serialization=True)")


def run(args):
    from ..encoder import Encoder
    from ..serving import API_KEY_ENV, ServeSettings, check_bind, serve

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    for name in ("max_inputs", "max_batch_tokens", "max_queue", "batch_size", "port", "max_request_bytes"):
        if getattr(args, name) < 1:
            raise Decoder2VecError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_wait_ms < 0:
        raise Decoder2VecError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    if args.onnx and (args.quantize or args.compile):
        raise Decoder2VecError("--quantize/--compile apply to the PyTorch model, not to --onnx")
    check_bind(args.host, api_key, args.allow_insecure)  # before the (slow) model load
    check_safetensors(args.model)
    settings = ServeSettings(
        model_name=args.model_name or model_name_for(args.model), api_key=api_key, max_inputs=args.max_inputs,
        max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        truncate=args.truncate, batch_size=args.batch_size, max_request_bytes=args.max_request_bytes,
    )
    if args.onnx:
        from ..loading import resolve_model
        from ..onnx_backend import OnnxEncoder

        encoder = OnnxEncoder.from_pretrained(resolve_model(args.model), threads=args.threads,
                                              max_length=args.max_length)
    else:
        encoder = Encoder.from_pretrained(args.model, max_length=args.max_length, device=args.device,
                                          dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                                          quantize=args.quantize, compile=args.compile)
    print(f"serving {settings.model_name!r} (dimension {encoder.dimension}) on http://{args.host}:{args.port}/v1 "
          f"{'with' if api_key else 'without'} an API key")
    serve(encoder, host=args.host, port=args.port, settings=settings, allow_insecure=args.allow_insecure)
