"""Running the app: bind checks, `serve()` for the CLI, `BackgroundServer` for tests and notebooks."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import uvicorn

from ..errors import Decoder2VecError
from .app import create_app
from .protocol import header_timeout_protocol
from .settings import ServeSettings

API_KEY_ENV = "DECODER2VEC_API_KEY"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname: could resolve anywhere


def check_bind(host: str, api_key: str | None, allow_insecure: bool = False) -> None:
    """Refuse to expose an unauthenticated server beyond this machine unless told to."""
    if not is_loopback(host) and not api_key and not allow_insecure:
        raise Decoder2VecError(
            f"refusing to serve on non-loopback host {host!r} without an API key: pass --api-key KEY "
            f"(or set {API_KEY_ENV}), or --allow-insecure if the network is trusted"
        )


def check_port(host: str, port: int) -> None:
    """Refuse a port outside 1..65535, or one this host cannot bind (in use, not ours, no such
    address), in one line and before anything slow (the model load) happens."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise Decoder2VecError(f"--port must be an integer in 1..65535, got {port!r}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as sock:
            # As uvicorn binds: a port left in TIME_WAIT by an earlier server is free to reuse.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        raise Decoder2VecError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def serve(encoder, *, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
          allow_insecure: bool = False, log_level: str = "info", graceful_timeout_s: int = 30) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests finish before the process exits."""
    settings = settings or ServeSettings()
    check_bind(host, settings.api_key, allow_insecure)
    check_port(host, port)
    app = create_app(encoder, settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=graceful_timeout_s,
                http=header_timeout_protocol(settings.header_timeout))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BackgroundServer:
    """`with BackgroundServer(encoder, settings) as url:` serves on a free loopback port in a thread;
    leaving the block shuts it down gracefully (in-flight requests finish)."""

    def __init__(self, encoder, settings: ServeSettings | None = None, *, host: str = "127.0.0.1",
                 port: int | None = None, app=None):
        self.host, self.port = host, port or free_port(host)
        self.app = app or create_app(encoder, settings)
        settings = settings or getattr(self.app.state, "settings", None) or ServeSettings()
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning",
                                timeout_graceful_shutdown=30, http=header_timeout_protocol(settings.header_timeout))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="decoder2vec-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)
        return self.url

    def stop(self, timeout_s: float = 60) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
