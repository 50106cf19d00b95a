"""Text data: real sources that work offline (sources.py) and training corpora / pair sets built
from them (corpora.py, pairs.py)."""

from .sources import bbc_news, libreoffice_help, stsb, wikipedia_en_articles

__all__ = ["bbc_news", "libreoffice_help", "stsb", "wikipedia_en_articles"]
