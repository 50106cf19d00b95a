"""Debian package descriptions as in-language retrieval pairs: a package's one-line summary -> its
long description, in Danish or German (the `package-descriptions-da|de` pair sources).

Debian's translators (DDTP) translate every package description; the mirror publishes them per
language as dists/<suite>/main/i18n/Translation-<lang>.bz2 (bookworm: ~50,000 Danish and ~14,000
German descriptions). Each record is

    Package: 0ad
    Description-md5: d943033b...
    Description-da: Realtids strategispil med historisk krigsførelse     <- the summary
     0 A.D. (udtalt »zero ey-dee«) er et frit, open source krigsspil ...  <- the long description
     .                                                                    <- a paragraph break

The file is fetched once into cache_dir()/data/package-descriptions/ (the suite is pinned, so a
run reads the same text everywhere). No evaluation task reads package descriptions.
"""

from __future__ import annotations

import bz2
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from ..atomic import cache_dir, write_atomic
from ..errors import Decoder2VecError, choices_error
from .pair import Pair
from .sources import clip

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"  # Debian 12: pinned so the pairs do not change under a recipe
LANGUAGES = ("da", "de")
INSTRUCTION = "Given the short description of a software package, retrieve its full description:"
# Evaluation texts (lower case) that occur inside bookworm's descriptions, found by the catalog and
# settings leakage guard (tests/test_languages.py): the appstream package's own catalog message and
# settings-retrieval-da's "Monospace font" query. A pair holding one is left out; the guard checks
# that nothing else is needed (it reads the evaluation catalogs; this loader must not).
EVALUATED_TEXTS = ("et redskab til at arbejde med appstream-metadata", "skrifttype med fast bredde")


def translation_url(lang: str) -> str:
    return f"{MIRROR}/dists/{SUITE}/main/i18n/Translation-{lang}.bz2"


def translation_file(lang: str) -> Path:
    """The language's Translation file in the data cache, fetched from the Debian mirror once."""
    if lang not in LANGUAGES:
        raise choices_error("package description language", lang, LANGUAGES)
    target = cache_dir() / "data" / "package-descriptions" / f"Translation-{lang}-{SUITE}.bz2"
    if not target.exists():
        url = translation_url(lang)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise Decoder2VecError(f"cannot fetch Debian's package descriptions {url} ({exc}); download it "
                                   f"by hand to {target}") from None
        write_atomic(target, lambda tmp: tmp.write_bytes(data))
    return target


def parse_descriptions(text: str, lang: str) -> list[tuple[str, str]]:
    """(summary, long description) of each record, in file order; the long description's lines
    joined by spaces and its paragraphs (" ." lines) by newlines."""
    field = f"Description-{lang}:"
    rows = []
    for record in text.split("\n\n"):
        lines = record.splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith(field)]
        if not starts:
            continue
        first = starts[0]
        summary = lines[first][len(field):].strip()
        paragraphs, current = [], []
        for line in lines[first + 1:]:
            if not line.startswith(" "):
                break  # the next field
            if line.strip() == ".":
                paragraphs.append(" ".join(current))
                current = []
            else:
                current.append(line.strip())
        paragraphs.append(" ".join(current))
        rows.append((summary, "\n".join(p for p in paragraphs if p)))
    return rows


def package_descriptions(lang: str, max_chars: int = 300) -> list[Pair]:
    """Each package's summary -> the start of its long description (cut at a word boundary before
    `max_chars`, as the other retrieval pairs are). A summary or a description that several packages
    share is left out (one query, one answer: `foo-data` and `foo-doc` repeat foo's description), and
    so is a description under 8 words or a pair holding an evaluated text (EVALUATED_TEXTS)."""
    text = bz2.decompress(translation_file(lang).read_bytes()).decode("utf-8", errors="replace")
    rows = parse_descriptions(text, lang)
    summaries = Counter(summary for summary, _ in rows)
    documents = Counter(document for _, document in rows)
    return [Pair(summary, clip(document, max_chars), [], f"package-descriptions-{lang}", INSTRUCTION)
            for summary, document in rows
            if summaries[summary] == 1 and documents[document] == 1 and len(document.split()) >= 8
            and not _holds_evaluated_text(summary, document)]


def _holds_evaluated_text(summary: str, document: str) -> bool:
    text = f"{summary}\n{document}".lower()
    return any(evaluated in text for evaluated in EVALUATED_TEXTS)
