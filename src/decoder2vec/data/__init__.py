"""Text data, below training and evaluation (it imports neither):

    sources.py       real sources that work offline: Wikipedia sample, LibreOffice help, STS-B, BBC News
    manpages.py      Danish/German man pages (Debian manpages-l10n)
    libreoffice.py   the help pages' train/test split, and the training sources built on it
    registry.py      every packaged source name, declared once
    corpora.py       load_texts / load_sentences: packaged name, local file or hub id -> texts
    pairs.py         load_pairs: the same -> Pair records (pair.py)
    languages.py     LANGUAGES: Danish and German, their suites, recipes and sources
"""

from .corpora import load_sentences, load_texts
from .languages import LANGUAGES, Language
from .pair import Pair
from .pairs import load_pairs
from .sources import bbc_news, libreoffice_help, stsb, wikipedia_en_articles

__all__ = ["bbc_news", "libreoffice_help", "stsb", "wikipedia_en_articles", "load_texts", "load_sentences",
           "load_pairs", "Pair", "LANGUAGES", "Language"]
