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

EVALUATION_ONLY: sources that only the evaluation suites read (data/gettext.py's translated
catalogs and desktop settings). No training name may be one of them or start with one, and
`refuse_evaluation_only` (called by load_texts / load_sentences / load_pairs, the loaders every
training stage reads through) refuses them by name, by Debian package name, and by a path inside
their cache folder.
"""

from __future__ import annotations

from typing import Callable

from pathlib import Path

from ..atomic import cache_dir
from ..errors import Decoder2VecError
from . import gettext, libreoffice, manpages, package_descriptions, sources
from .pair import Pair

EVALUATION_ONLY: tuple[str, ...] = (*gettext.EVALUATION_SOURCES, *gettext.APT_PACKAGES)


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
    "libreoffice-titles-en-train": lambda **_: libreoffice.title_pairs("en"),
    "libreoffice-titles-da-train": lambda **_: libreoffice.title_pairs("da"),
    "libreoffice-titles-de-train": lambda **_: libreoffice.title_pairs("de"),
    # A section heading of a training help page -> the section's text.
    "libreoffice-headings-en-train": lambda **_: libreoffice.heading_pairs("en"),
    "libreoffice-headings-da-train": lambda **_: libreoffice.heading_pairs("da"),
    "libreoffice-headings-de-train": lambda **_: libreoffice.heading_pairs("de"),
    # A man page's one-line summary -> the start of its text (no evaluation task reads man pages).
    "manpage-summaries-da": lambda **_: manpages.manpage_summaries("da"),
    "manpage-summaries-de": lambda **_: manpages.manpage_summaries("de"),
    # A Debian package's translated summary -> its long description (the Debian mirror's i18n files).
    "package-descriptions-da": lambda **_: package_descriptions.package_descriptions("da"),
    "package-descriptions-de": lambda **_: package_descriptions.package_descriptions("de"),
})
# Pair sources whose two texts are not a translation (or paraphrase) of each other: the side of each
# text ("query": a query, or a text of a symmetric task; "document": a text to be found).
# Distillation gives each text its own teacher vector, on its side; other pair sources are
# translations, both texts learning the teacher's vector of the first (Reimers & Gurevych).
PAIR_SIDES: dict[str, tuple[str, str]] = {
    "libreoffice-titles-en-train": ("query", "document"),
    "libreoffice-titles-da-train": ("query", "document"),
    "libreoffice-titles-de-train": ("query", "document"),
    "libreoffice-headings-en-train": ("query", "document"),
    "libreoffice-headings-da-train": ("query", "document"),
    "libreoffice-headings-de-train": ("query", "document"),
    "manpage-summaries-da": ("query", "document"),
    "manpage-summaries-de": ("query", "document"),
    "package-descriptions-da": ("query", "document"),
    "package-descriptions-de": ("query", "document"),
    "stsb-en-train": ("query", "query"),  # scored sentence pairs: two sentences, not one meaning
    "stsb-de-train": ("query", "query"),
}

SENTENCES: dict[str, Callable[[], list[str]]] = _merge({})

PAIR_PREFIXES: dict[str, Callable[..., list[Pair]]] = _merge({})

NAMES = sorted({*CORPORA, *SENTENCES, *PAIRS, *(f"{prefix}..." for prefix in PAIR_PREFIXES)})


def _is_evaluation_only(name: str) -> bool:
    return any(name == held or name.startswith(held + "-") for held in EVALUATION_ONLY)


def refuse_evaluation_only(source: str) -> None:
    """One-line error if a training source names or points into an evaluation-only source."""
    if _is_evaluation_only(source):
        raise Decoder2VecError(f"data source {source!r} is evaluation-only (the Danish/German catalog tasks read it); "
                               "training may not read it")
    path = Path(source).expanduser()
    held = cache_dir() / "data" / "gettext"
    if path.exists() and path.resolve().is_relative_to(held.resolve()):
        raise Decoder2VecError(f"data file {source} is evaluation-only data ({held}); training may not read it")


_held = sorted(name for name in NAMES if _is_evaluation_only(name.removesuffix("...")))
if _held:  # an import-time error, like a name declared twice
    raise Decoder2VecError(f"training source name(s) {', '.join(_held)} collide with evaluation-only sources")
