"""ServeSettings: how the server behaves; each field is the `decoder2vec serve` flag of the same name."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Decoder2VecError


@dataclass
class ServeSettings:
    model_name: str = "decoder2vec"
    api_key: str | None = None
    max_inputs: int = 2048  # inputs per request (OpenAI's limit)
    # Tokens per model call, summed over the requests batched together. A larger request is split
    # into pieces of at most this many tokens, so it holds the model for one piece at a time: this
    # bounds how long one client can keep the others waiting. None: see `batch_tokens_for`.
    max_batch_tokens: int | None = None
    max_wait_ms: float = 5.0  # how long a lone request waits for company
    max_queue: int = 256  # requests waiting for the model; more get 503
    truncate: bool = False  # cut inputs longer than max_length instead of answering 413
    max_request_bytes: int = 16 * 2**20  # larger bodies get 413 before they are read whole
    batch_size: int = 32  # Encoder.encode's batch size inside one model call
    # Seconds from arrival to answer; then 504 and the request's pieces not yet encoded are dropped.
    # 600 is the openai client's own default timeout: past it, nobody is waiting for the answer.
    request_timeout: float = 600.0
    # Characters per input (instruction included), checked before anything is tokenized: tokenizing
    # one 4 MB input held the token counter for seconds and cost a GB (issue 23). None: see
    # `input_chars_for`.
    max_input_chars: int | None = None
    # Seconds a connection may take to send a request's headers (from connecting, or from the end of
    # its last answer); then it is closed. uvicorn has no such bound: half-sent headers held a
    # connection open forever.
    header_timeout: float = 10.0
    # An index folder (`decoder2vec index`) searched by POST /v1/search; None: no search route.
    index: str | None = None

    def __post_init__(self):
        for name in ("max_inputs", "max_batch_tokens", "max_queue", "max_request_bytes", "batch_size",
                     "max_input_chars"):
            value = getattr(self, name)
            if name in ("max_batch_tokens", "max_input_chars") and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise Decoder2VecError(f"{_flag(name)} must be an integer >= 1, got {value!r}")
        if isinstance(self.max_wait_ms, bool) or not isinstance(self.max_wait_ms, (int, float)) \
                or not 0 <= self.max_wait_ms < float("inf"):
            raise Decoder2VecError(f"{_flag('max_wait_ms')} must be a number >= 0, got {self.max_wait_ms!r}")
        if isinstance(self.request_timeout, bool) or not isinstance(self.request_timeout, (int, float)) \
                or not 0 < self.request_timeout < float("inf"):
            raise Decoder2VecError(f"{_flag('request_timeout')} must be a number of seconds > 0, "
                                   f"got {self.request_timeout!r}")
        if isinstance(self.header_timeout, bool) or not isinstance(self.header_timeout, (int, float)) \
                or not 0 < self.header_timeout < float("inf"):
            raise Decoder2VecError(f"{_flag('header_timeout')} must be a number of seconds > 0, "
                                   f"got {self.header_timeout!r}")


def batch_tokens_for(settings: ServeSettings, device_type: str, max_length: int) -> int:
    """The token budget of one model call. Default: 8192 on an accelerator; on a CPU 1024 (one
    8192-token call there held every other client far too long, issue 13), but at least one text
    of the model's max length."""
    if settings.max_batch_tokens is not None:
        return settings.max_batch_tokens
    return max(1024, max_length) if device_type == "cpu" else 8192


def input_chars_for(settings: ServeSettings, max_length: int) -> int:
    """Characters one input may have. Default: 100,000, or 32 per token of the model's max length
    if that is more; a text that long is far past max_length tokens in any tokenizer we know (BPE
    averages 3-5 characters per token), so only inputs that would be cut or refused anyway are
    refused, and one input costs the tokenizer a few milliseconds."""
    if settings.max_input_chars is not None:
        return settings.max_input_chars
    return max(100_000, 32 * max_length)


def _flag(name: str) -> str:
    return f"{name} (--{name.replace('_', '-')})"
