"""Word-role labels from the LibreOffice help pages' own markup: a word-level tagging task.

The help sources mark words by role - <menuitem>, <keycode>, <input>, <literal>, <emph> and
links - and the generated HTML keeps that as `<span class="menuitem">` ... and `<a href>`, the same
in en, da and de. Each paragraph (the ones data/sources.py reads: an id'd <p>/<h*>, hidden
platform variants skipped, whitespace collapsed - so the text is the same string) becomes its
whitespace-separated words, each labelled by the role its characters mostly sit in (the innermost
one when roles nest), or "O". The pages are parsed by sources.HelpPage (the one parser of them,
told these roles). Pages follow the project's train/test split (data/libreoffice.py).
"""

from __future__ import annotations

import hashlib
import re

from ..errors import choices_error
from ..model.words import word_spans
from . import sources
from .libreoffice import SPLITS, help_split

ROLES = ("menuitem", "keycode", "input", "literal", "emph", "link")
OUTSIDE = "O"


def _normalise(parts: list[tuple[str, str | None]]) -> tuple[str, list[str | None]]:
    """sources' `re.sub(r"\\s+", " ", text).strip()`, carrying each character's role along."""
    chars, roles = [], []
    for text, role in parts:
        for c in text:
            if re.match(r"\s", c):
                if chars and chars[-1] != " ":
                    chars.append(" ")
                    roles.append(None)
            else:
                chars.append(c)
                roles.append(role)
    while chars and chars[-1] == " ":
        chars.pop()
        roles.pop()
    return "".join(chars), roles


def page_words(html: str) -> list[dict]:
    """Every paragraph of one help page: {"id", "text", "spans" (n, 2), "labels" [n]}."""
    page = sources.HelpPage(ROLES)
    page.feed(html)
    page.close()
    out = []
    for ident, parts in page.paragraphs:
        text, roles = _normalise(parts)
        if not text:
            continue
        spans = word_spans(text)
        labels = []
        for start, end in spans:
            inside = [r or OUTSIDE for r in roles[start:end]]
            labels.append(max(dict.fromkeys(inside), key=inside.count))  # majority; ties: first seen
        out.append({"id": ident, "text": text, "spans": spans, "labels": labels})
    return out


def role_paragraphs(lang: str, split: str, *, limit: int | None = None) -> list[dict]:
    """Paragraphs of `lang`'s help pages on one side of the split that have at least one role word,
    each {"page", "id", "text", "spans", "labels"}. Pages are read in a stable hashed order (so a
    `limit` samples across all modules, not the first folder) and at most `limit` paragraphs kept."""
    if split not in SPLITS:
        raise choices_error("LibreOffice help split", split, SPLITS)
    root = sources.help_tree(lang)
    keys = sorted((f.relative_to(root).with_suffix("").as_posix() for f in root.rglob("*.html")),
                  key=lambda k: hashlib.sha1(k.encode("utf-8")).hexdigest())
    out = []
    for key in keys:
        if key == "noscript" or help_split(key) != split:
            continue
        for paragraph in page_words((root / f"{key}.html").read_text(encoding="utf-8", errors="replace")):
            if any(label != OUTSIDE for label in paragraph["labels"]):
                out.append({"page": key, **paragraph})
                if limit is not None and len(out) >= limit:
                    return out
    return out
