"""OpenAI-compatible embeddings server: `decoder2vec serve` or `serving.serve(encoder)`."""

from .app import ServeSettings, create_app
from .batcher import MicroBatcher
from .server import API_KEY_ENV, BackgroundServer, check_bind, is_loopback, serve

__all__ = ["ServeSettings", "create_app", "MicroBatcher", "BackgroundServer", "serve", "check_bind",
           "is_loopback", "API_KEY_ENV"]
