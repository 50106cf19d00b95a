"""Evaluation data built from the real sources in `decoder2vec.data`.

Every builder is deterministic for a given seed, so a suite always scores the same texts.
Subsampling keeps the default suite within a few minutes of CPU encoding for a 135M model.
LibreOffice help tasks read only the test side of the page split that data/libreoffice.py
declares (training reads the train side), so no suite can evaluate on a page training saw. The
catalog tasks (gettext bitext, desktop-settings retrieval) read data/gettext.py's sources, which
no training recipe reads at all.
"""

from __future__ import annotations

import functools
import random
import re
from collections import defaultdict

from ..data import gettext, sources
from ..data.libreoffice import help_pages
from ..data.sources import clip
from ..errors import Decoder2VecError

# LibreOffice help modules used as clustering labels: each one's pages are about one application.
HELP_MODULES = ("scalc", "swriter", "simpress", "sbasic", "sdatabase", "smath", "schart")


def _sample(items: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return list(items)
    return random.Random(seed).sample(items, n)


# ---------------------------------------------------------------- STS-B
def stsb_pairs(lang: str, split: str, sample: int | None, seed: int):
    """(sentences1, sentences2, scores) of STS-B, optionally a seeded sample of pairs."""
    rows = _sample(sources.stsb(lang, split), sample, seed)
    return [a for a, _, _ in rows], [b for _, b, _ in rows], [s for _, _, s in rows]


def stsb_binary_pairs(lang: str, split: str, sample: int | None, seed: int, positive_min: float, negative_max: float):
    """STS-B as pair classification: paraphrase (score >= positive_min) vs not (<= negative_max);
    the ambiguous middle is dropped."""
    rows = [r for r in sources.stsb(lang, split) if r[2] >= positive_min or r[2] <= negative_max]
    rows = _sample(rows, sample, seed)
    return [a for a, _, _ in rows], [b for _, b, _ in rows], [int(s >= positive_min) for _, _, s in rows]


# ---------------------------------------------------------------- BBC News
def bbc_split(sample_train_per_label: int, sample_test: int, seed: int, max_chars: int | None, headlines: bool = False):
    """A fixed stratified half/half train/test split of BBC News, then seeded samples of each half.

    BBC News ships without a split; we make one with the seed so it never changes.
    """
    texts, labels = sources.bbc_news()
    if headlines:
        texts = [t.split("\n", 1)[0].strip() for t in texts]
    by_label = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(by_label):
        idx = by_label[label][:]
        rng.shuffle(idx)
        half = len(idx) // 2
        train += idx[:half][:sample_train_per_label]
        test += idx[half:]
    test = sorted(_sample(test, sample_test, seed))
    pick = lambda ids: ([clip(texts[i], max_chars) for i in ids], [labels[i] for i in ids])  # noqa: E731
    return pick(sorted(train)), pick(test)


def bbc_headlines(sample: int | None, seed: int):
    """(headlines, topics): the first line of each article, a seeded sample."""
    texts, labels = sources.bbc_news()
    rows = _sample(list(zip(texts, labels)), sample, seed)
    return [t.split("\n", 1)[0].strip() for t, _ in rows], [label for _, label in rows]


# ---------------------------------------------------------------- LibreOffice help
@functools.lru_cache(maxsize=3)  # split once per process; callers only read it
def _help(lang: str) -> dict:
    if lang not in sources.LIBREOFFICE_PACKAGES:
        raise Decoder2VecError(f"no LibreOffice help in language {lang!r}; choose one of en, da, de")
    return help_pages(lang, "test")


def help_bitext(source_lang: str, target_lang: str, sample: int | None, seed: int,
                min_chars: int = 40, max_chars: int = 300):
    """Aligned help paragraphs (same page, same paragraph id): (source texts, target texts).

    Paragraphs left untranslated (identical to the source) are dropped, and each source text is
    used once, so every source sentence has exactly one right answer. The candidates are chosen
    from paragraphs present in all three languages so en-da and en-de share the English side.
    """
    pages = {lang: _help(lang) for lang in ("en", "da", "de")}
    pairs, seen = [], set()
    for key in sorted(pages["en"]):
        by_lang = {lang: dict(zip(p[key]["paragraph_ids"], p[key]["paragraphs"]))
                   for lang, p in pages.items() if key in p}
        if len(by_lang) < 3:
            continue
        for pid, english in by_lang["en"].items():
            texts = {lang: by_lang[lang].get(pid) for lang in by_lang}
            if any(t is None for t in texts.values()) or not min_chars <= len(english) <= max_chars:
                continue
            if texts["da"] == english or texts["de"] == english or english in seen:
                continue
            seen.add(english)
            pairs.append(texts)
    pairs = _sample(pairs, sample, seed)
    target_seen, out = set(), []
    for texts in pairs:  # a duplicated translation would make two answers right
        if texts[target_lang] not in target_seen:
            target_seen.add(texts[target_lang])
            out.append((texts[source_lang], texts[target_lang]))
    return [s for s, _ in out], [t for _, t in out]


@functools.lru_cache(maxsize=1)
def _retrievable_pages(min_chars: int = 150) -> list[str]:
    """Page keys usable as retrieval items in every language: a title unique in its language,
    a body beyond the title, and translated (Danish/German body differs from the English)."""
    pages = {lang: _help(lang) for lang in ("en", "da", "de")}
    unique = {}
    for lang, by_key in pages.items():
        counts = defaultdict(int)
        for page in by_key.values():
            counts[page["title"].lower()] += 1
        unique[lang] = counts
    keys = []
    for key in sorted(pages["en"]):
        if not all(key in p for p in pages.values()):
            continue
        ok = all(
            unique[lang][p[key]["title"].lower()] == 1 and len(_body(p[key])) >= min_chars and p[key]["title"]
            for lang, p in pages.items()
        )
        if ok and pages["da"][key]["text"] != pages["en"][key]["text"] != pages["de"][key]["text"]:
            keys.append(key)
    return tuple(keys)


def _body(page: dict) -> str:
    # The first paragraph is the page heading, usually the title itself: keep it out of the
    # document so the query does not find itself verbatim.
    paragraphs = page["paragraphs"][1:] if page["paragraphs"] and page["paragraphs"][0] == page["title"] else page["paragraphs"]
    return " ".join(paragraphs)


def help_retrieval(lang: str, n_queries: int, n_corpus: int, seed: int, max_chars: int | None):
    """Title -> page retrieval in one language: (queries, corpus, relevant doc index per query).

    The same page keys are drawn for every language, so en/da/de scores are comparable.
    """
    keys = list(_retrievable_pages())
    chosen = _sample(keys, max(n_corpus, n_queries), seed)
    queries_keys = chosen[:n_queries]
    pages = _help(lang)
    corpus = [clip(_body(pages[k]), max_chars) for k in chosen]
    queries = [pages[k]["title"] for k in queries_keys]
    relevant = [{i} for i in range(len(queries_keys))]
    return queries, corpus, relevant


def help_titles_by_module(lang: str, per_module: int, seed: int):
    """(page titles, module) for clustering: which application a help page belongs to."""
    pages = _help(lang)
    by_module = defaultdict(list)
    for key, page in sorted(pages.items()):
        module = key.split("/")[1] if key.count("/") >= 2 else ""
        if module in HELP_MODULES:
            by_module[module].append(page["title"])
    titles, labels = [], []
    for module in HELP_MODULES:
        unique = sorted(set(by_module[module]))
        for title in _sample(unique, per_module, seed):
            titles.append(title)
            labels.append(module)
    return titles, labels


# ---------------------------------------------------------------- translated catalogs (evaluation only)
# printf directives, shell/markup/URLs, and gpg's "|N|" prompt markers: not prose
_FORMAT = re.compile(r"%|\$\{|\\|<[a-z/]|\{\d?\}|`|\||\bhttps?:")


def _plain_message(text: str, min_chars: int, max_chars: int) -> bool:
    """A message that reads as prose: within the length range, no printf/markup/URL, mostly letters."""
    letters = sum(ch.isalpha() for ch in text)
    return (min_chars <= len(text) <= max_chars and len(text.split()) >= 4 and not _FORMAT.search(text)
            and letters >= 0.7 * len(text))


@functools.lru_cache(maxsize=4)
def _catalog_bitext(min_chars: int, max_chars: int) -> tuple[dict, ...]:
    """{"en", "da", "de"} of every catalog message translated into both languages, in package and
    catalog order: the same English side for en-da and en-de, as in the help bitext."""
    translated = {lang: {} for lang in gettext.LANGUAGES}
    for lang in gettext.LANGUAGES:
        for english, target, _ in gettext.message_pairs(lang):
            translated[lang].setdefault(english, target)
    rows = []
    for english, da in translated["da"].items():
        de = translated["de"].get(english)
        if de and _plain_message(english, min_chars, max_chars):
            rows.append({"en": english, "da": da, "de": de})
    return tuple(rows)


def gettext_bitext(source_lang: str, target_lang: str, sample: int | None, seed: int,
                   min_chars: int = 40, max_chars: int = 300):
    """English user-interface message -> its Danish/German translation (Debian's gettext
    catalogs of GTK, GLib, GnuPG, GStreamer, AppStream, PackageKit): (source texts, target texts).
    Each English message is used once and a translation that two messages share is dropped, so
    every source has exactly one right answer."""
    if target_lang not in gettext.LANGUAGES or source_lang != "en":
        raise Decoder2VecError(f"catalog bitext is en -> da or de, not {source_lang} -> {target_lang}")
    rows = list(_catalog_bitext(min_chars, max_chars))
    counts = defaultdict(int)
    for row in rows:
        for lang in gettext.LANGUAGES:
            counts[lang, row[lang]] += 1
    # Dropped when shared in either language, so en-da and en-de sample the same English messages.
    rows = [row for row in rows if all(counts[lang, row[lang]] == 1 for lang in gettext.LANGUAGES)]
    chosen = _sample(rows, sample, seed)
    return [row[source_lang] for row in chosen], [row[target_lang] for row in chosen]


@functools.lru_cache(maxsize=1)
def _settings_with_unique_texts() -> tuple[dict, ...]:
    """Desktop settings translated into da and de whose summary and description are each unique
    (case-insensitive) in every language and differ from each other: one right answer per query."""
    keys = [k for k in gettext.gsettings_keys() if all(k["summary"].values()) and all(k["description"].values())]
    unique = []
    for key in keys:
        ok = True
        for lang in ("en", *gettext.LANGUAGES):
            summaries = [k["summary"][lang].lower() for k in keys]
            descriptions = [k["description"][lang].lower() for k in keys]
            ok = ok and summaries.count(key["summary"][lang].lower()) == 1 \
                and descriptions.count(key["description"][lang].lower()) == 1 \
                and key["summary"][lang] != key["description"][lang]
        if ok:
            unique.append(key)
    return tuple(unique)


def gsettings_retrieval(lang: str, n_queries: int, n_corpus: int, seed: int, max_chars: int | None):
    """GNOME desktop setting: its short summary (query) -> its description (document), in one
    language: (queries, corpus, relevant doc index per query). The same settings in every language."""
    if lang not in ("en", *gettext.LANGUAGES):
        raise Decoder2VecError(f"no desktop-settings retrieval in language {lang!r}; choose one of en, da, de")
    chosen = _sample(list(_settings_with_unique_texts()), max(n_corpus, n_queries), seed)
    queries = [k["summary"][lang] for k in chosen[:n_queries]]
    corpus = [clip(k["description"][lang], max_chars) for k in chosen]
    return queries, corpus, [{i} for i in range(len(queries))]
