"""LibreOffice help pages as training data, and the page split that keeps evaluation out of it.

The evaluation suites draw their help tasks (retrieval, bitext, clustering in en/da/de) from the
same pages that Danish and German training reads, so the pages are split once, here, and both
sides read the split; neither asks the other:

- test: one page in five by a stable hash of its key, plus every page the shipped suites read
  (`EVALUATION_PAGES`, frozen in evaluation_pages.py);
- train: every other page.

Training sources read train pages only (`help_documents(lang, "train")`,
`translation_pairs(lang)`) and also drop any paragraph that appears on a test page, because
boilerplate paragraphs recur across pages. The man pages are in no suite at all.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from ..errors import choices_error
from . import sources
from .evaluation_pages import EVALUATION_PAGES
from .pair import Pair

TEST_SHARE = 5  # one page in TEST_SHARE (by hash) is held out for evaluation
SPLITS = ("train", "test")


def help_split(page_key: str) -> str:
    """"test" for a page evaluation may read (one in five by a stable hash of its key, or one the
    shipped suites read), else "train"."""
    digest = hashlib.sha1(page_key.encode("utf-8")).digest()
    return "test" if digest[0] % TEST_SHARE == 0 or page_key in EVALUATION_PAGES else "train"


def help_pages(lang: str, split: str) -> dict[str, dict]:
    """The help pages of `lang` ("en", "da", "de") on one side of the split, in page order."""
    if split not in SPLITS:
        raise choices_error("LibreOffice help split", split, SPLITS)
    return {k: v for k, v in sources.libreoffice_help(lang).items() if help_split(k) == split}


def held_out_paragraphs(lang: str) -> set[str]:
    """Every paragraph of an English or `lang` test page: training must not read it anywhere."""
    return {p for pages in (sources.libreoffice_help("en"), sources.libreoffice_help(lang))
            for key, page in pages.items() if help_split(key) == "test" for p in page["paragraphs"]}


def held_out_titles(lang: str) -> set[str]:
    """Every title of a `lang` test page: the queries the help-retrieval tasks ask, never a training query."""
    return {page["title"].strip() for page in help_pages(lang, "test").values()}


def help_documents(lang: str, split: str | None = None) -> list[str]:
    """One document per help page: every page (split None), or the train pages without any
    held-out paragraph (split "train")."""
    if split is None:
        return [page["text"] for page in sources.libreoffice_help(lang).values()]
    if split != "train":
        raise choices_error("LibreOffice help split for training", split, ["train"])
    held = held_out_paragraphs(lang)
    docs = ("\n".join(p for p in page["paragraphs"] if p not in held) for page in help_pages(lang, "train").values())
    return [d for d in docs if d]


def libreoffice_pairs(lang: str, *, min_words: int = 4) -> list[Pair]:
    """English help paragraph -> its translation, from every page: aligned by page key and
    paragraph id (not for training a model you evaluate on the help tasks)."""
    english, other = sources.libreoffice_help("en"), sources.libreoffice_help(lang)
    pairs, seen = [], set()
    for key, page in english.items():
        if key not in other:
            continue
        translated = dict(zip(other[key]["paragraph_ids"], other[key]["paragraphs"]))
        for pid, text in zip(page["paragraph_ids"], page["paragraphs"]):
            target = translated.get(pid)
            if not target or len(text.split()) < min_words or text == target or (text, target) in seen:
                continue
            seen.add((text, target))
            pairs.append(Pair(text, target, [], f"libreoffice-en-{lang}"))
    return pairs


def translation_pairs(lang: str) -> list[Pair]:
    """English help paragraph -> its translation (aligned by paragraph id), from train pages
    only; a paragraph that also appears on a test page (shared boilerplate) is dropped too."""
    english = sources.libreoffice_help("en")
    train = help_pages(lang, "train")
    held = held_out_paragraphs(lang)
    pairs, seen = [], set()
    for key in train:
        if key not in english:
            continue
        translated = dict(zip(train[key]["paragraph_ids"], train[key]["paragraphs"]))
        for pid, text in zip(english[key]["paragraph_ids"], english[key]["paragraphs"]):
            target = translated.get(pid)
            if (not target or len(text.split()) < 4 or text == target or (text, target) in seen
                    or text in held or target in held):
                continue
            seen.add((text, target))
            pairs.append(Pair(text, target, [], f"libreoffice-en-{lang}-train"))
    return pairs


def title_pairs(lang: str, max_chars: int = 300) -> list[Pair]:
    """Help page title -> the start of the page's text (without its heading, cut at a word boundary
    before `max_chars`), from train pages only and without any paragraph that appears on a test
    page: a query and the document it finds, in one language (the help-retrieval tasks ask the same
    of test pages, cut at 250 characters). A teacher sees what the student sees, not the whole page."""
    held = held_out_paragraphs(lang)
    # A title some test page also has (e.g. "Animation") is a query the help-retrieval tasks ask.
    pairs, seen = [], held_out_titles(lang)
    for page in help_pages(lang, "train").values():
        title = page["title"].strip()
        paragraphs = [p for p in page["paragraphs"] if p not in held and p.strip() != title]
        body = sources.clip(" ".join(paragraphs), max_chars)
        if not title or len(body.split()) < 8 or title in seen:
            continue  # a title shared by several pages is no query with one answer
        seen.add(title)
        pairs.append(Pair(title, body, [], f"libreoffice-titles-{lang}-train"))
    return pairs


HEADING_INSTRUCTION = "Given a section heading of a help page, retrieve the section:"


def heading_pairs(lang: str, max_chars: int = 300) -> list[Pair]:
    """Section heading -> the section's text (its paragraphs up to the next heading, cut at a word
    boundary before `max_chars`), from train pages only and without any paragraph that appears on a
    test page: more in-language query -> document pairs of the kind title_pairs gives (~1,100 a
    language beside ~830 titles). Left out: a heading that is its page's title, one some test page
    has as its title (a query the help-retrieval tasks ask) or as a paragraph, and one that several
    sections share ("Syntax:", "Beispiel:"): no query with one answer."""
    held, test_titles = held_out_paragraphs(lang), held_out_titles(lang)
    sections = []
    for page in help_pages(lang, "train").values():
        ids, paragraphs = page["paragraph_ids"], page["paragraphs"]
        starts = [i for i, ident in enumerate(ids) if ident.startswith("hd_id")] + [len(ids)]
        for start, end in zip(starts, starts[1:]):
            heading = paragraphs[start].strip()
            if heading == page["title"].strip():
                continue
            body = sources.clip(" ".join(p for p in paragraphs[start + 1:end] if p not in held), max_chars)
            sections.append((heading, body))
    counts = Counter(heading for heading, _ in sections)
    return [Pair(heading, body, [], f"libreoffice-headings-{lang}-train", HEADING_INSTRUCTION)
            for heading, body in sections
            if counts[heading] == 1 and heading not in test_titles and heading not in held and len(body.split()) >= 8]
