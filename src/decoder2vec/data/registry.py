"""Every packaged data source, declared once: name -> loader.

- CORPORA: name -> loader() returning documents (`load_texts` cleans and limits them; SimCSE's
  `load_sentences` splits them into sentences);
- SENTENCES: name -> loader() returning ready-made sentences (one per item, never re-split);
- PAIRS: name -> loader(**options) returning `Pair`s; options are `load_pairs`' pair options
  (`min_score`, `negative_max_score`), and a loader ignores those it has no use for;
- PAIR_PREFIXES: "prefix:" -> loader(argument, **options) for sources that take an argument
  (e.g. a folder after the prefix).

A recipe's `data:` names one of these, a local file, or a hub dataset id.

A new source module declares its own `CORPORA` / `PAIRS` dicts in this shape and is merged
below (the registry imports its sources; nothing registers itself from above). A name declared
twice is an error at import time.
"""

from __future__ import annotations

from typing import Callable

from ..errors import Decoder2VecError
from . import libreoffice, manpages, sources
from .pair import Pair


def _merge(*declarations: dict) -> dict:
    merged: dict = {}
    for declared in declarations:
        twice = sorted(set(merged) & set(declared))
        if twice:
            raise Decoder2VecError(f"data source name(s) declared twice: {', '.join(twice)}")
        merged.update(declared)
    return merged


CORPORA: dict[str, Callable[[], list[str]]] = _merge({
    "wikipedia-en": sources.wikipedia_en_articles,  # the gensim package's test data, ~100 articles
    # Every help page (evaluation reads some of them) ...
    "libreoffice-help-en": lambda: libreoffice.help_documents("en"),
    "libreoffice-help-da": lambda: libreoffice.help_documents("da"),
    "libreoffice-help-de": lambda: libreoffice.help_documents("de"),
    # ... and the training side of the page split only.
    "libreoffice-help-da-train": lambda: libreoffice.help_documents("da", "train"),
    "libreoffice-help-de-train": lambda: libreoffice.help_documents("de", "train"),
    "manpages-da": lambda: manpages.manpage_documents("da"),
    "manpages-de": lambda: manpages.manpage_documents("de"),
})

PAIRS: dict[str, Callable[..., list[Pair]]] = _merge({
    "stsb-en-train": lambda **options: sources.stsb_pairs("en", **options),
    "stsb-de-train": lambda **options: sources.stsb_pairs("de", **options),
    "libreoffice-en-da": lambda **_: libreoffice.libreoffice_pairs("da"),
    "libreoffice-en-de": lambda **_: libreoffice.libreoffice_pairs("de"),
    "libreoffice-en-da-train": lambda **_: libreoffice.translation_pairs("da"),
    "libreoffice-en-de-train": lambda **_: libreoffice.translation_pairs("de"),
})

SENTENCES: dict[str, Callable[[], list[str]]] = _merge({})

PAIR_PREFIXES: dict[str, Callable[..., list[Pair]]] = _merge({})

NAMES = sorted({*CORPORA, *SENTENCES, *PAIRS, *(f"{prefix}..." for prefix in PAIR_PREFIXES)})
