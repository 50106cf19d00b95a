"""OpenAI-compatible embeddings server: `decoder2vec serve` or `serving.serve(encoder)`."""

from .app import create_app
from .batcher import MicroBatcher
from .server import API_KEY_ENV, BackgroundServer, check_bind, check_port, is_loopback, serve
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "MicroBatcher", "BackgroundServer", "serve", "check_bind",
           "check_port", "is_loopback", "API_KEY_ENV"]
