"""More real Danish and German prose for the language recipes: the translated Linux man pages.

Debian ships the man pages translated by the manpages-l10n project as `manpages-da` (about 190
pages, ~0.7 MB of source) and `manpages-de` (about 900 pages, ~12 MB). They are real,
human-translated technical prose, disjoint from the LibreOffice help pages that the evaluation
suite uses, so MNTP and SimCSE can train on them without touching a test item.

`manpages(lang)` downloads the package once with `apt-get download` (no root, nothing installed),
turns each page's roff source into plain paragraphs and caches them as JSON lines under
`cache_dir()/data/manpages-<lang>.jsonl` (written atomically: a killed run never leaves half a file).
`manpage_documents(lang)` joins each page's paragraphs into one document: the `manpages-da|de`
corpora of the data registry. `manpage_summaries(lang)` pairs each page's one-line summary (its
NAME line, e.g. "base32 - base32 kod/afkode data") with the start of its text: a short query and
the document it finds, in one language (the `manpage-summaries-da|de` pair sources).
"""

from __future__ import annotations

import gzip
import json
import re
import tempfile
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from ..atomic import cache_dir, write_atomic
from ..errors import choices_error
from .debian import deb_members, download_deb
from .pair import Pair
from .sources import clip

MANPAGE_PACKAGES = {"da": "manpages-da", "de": "manpages-de"}

# Sections that are boilerplate in every page (authors, bug reports, copyright, see also).
_SKIP_SECTIONS = {
    "da": {"FORFATTER", "FORFATTERE", "FEJLRAPPORTER", "OPHAVSRET", "SE OGSÅ", "OVERSÆTTELSE", "KOLOFON"},
    "de": {"AUTOR", "AUTOREN", "FEHLER MELDEN", "COPYRIGHT", "SIEHE AUCH", "ÜBERSETZUNG", "KOLOPHON"},
}
_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes \fB \fI \fP \f[CR]
    (re.compile(r"\\[/,&:%]"), ""),  # italic corrections, zero-width breaks
    (re.compile(r"\\\(aq"), "'"), (re.compile(r"\\\((dq|lq|rq|Fo|Fc)"), '"'),
    (re.compile(r"\\\((em|en)"), "–"), (re.compile(r"\\\(co"), "©"), (re.compile(r"\\\(bu"), "•"),
    (re.compile(r"\\\(.."), ""), (re.compile(r"\\\[[^\]]*\]"), ""),
    (re.compile(r"\\\*(\(..|\[[^\]]*\]|.)"), ""),  # string registers
    (re.compile(r"\\s[-+]?\d"), ""), (re.compile(r"\\[-e]"), lambda m: "-" if m.group(0) == "\\-" else "\\"),
    (re.compile(r"\\ "), " "), (re.compile(r"\\(.)"), r"\1"),
]
_BREAKS = {"PP", "P", "LP", "TP", "IP", "SH", "SS", "HP", "RS", "RE", "br", "sp", "nf", "fi", "EX", "EE", "TH", "SY"}
_INLINE = {"B", "I", "BI", "IB", "BR", "RB", "IR", "RI", "SM", "SB", "UR", "MT", "UE", "ME", "OP"}


def _unescape(line: str) -> str:
    for pattern, repl in _ESCAPES:
        line = pattern.sub(repl, line)
    return line


def roff_paragraphs(source: str, lang: str) -> list[str]:
    """Plain-text paragraphs of one man page's roff source: prose only (no option lists, no code
    blocks, no boilerplate sections); each paragraph has at least 8 words."""
    paragraphs, current, section, verbatim, tagged = [], [], "", False, False

    def flush():
        text = " ".join(" ".join(current).split())
        current.clear()
        words = text.split()
        letters = sum(ch.isalpha() for ch in text)
        if section not in _SKIP_SECTIONS.get(lang, set()) and len(words) >= 8 and letters > 0.6 * len(text):
            paragraphs.append(text)

    for raw in source.splitlines():
        if raw.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if raw.startswith((".", "'")):
            parts = raw[1:].split(None, 1)
            macro = parts[0] if parts else ""
            arg = parts[1] if len(parts) > 1 else ""
            if macro in _BREAKS:
                flush()
                verbatim = macro in ("nf", "EX") or (verbatim and macro not in ("fi", "EE"))
                tagged = macro == "TP"  # the next line is an option tag, not prose
                if macro == "SH":
                    section = _unescape(arg).strip('"').strip().upper()
            elif macro in _INLINE and not verbatim:
                current.append(_unescape(arg).replace('"', ""))
            continue
        if verbatim:
            continue
        if tagged:
            tagged = False
            continue
        current.append(_unescape(raw))
    flush()
    return paragraphs


def roff_summary(source: str) -> str | None:
    """The one-line summary in a man page's NAME section (the first section, up to the next one):
    in man(7) the text after the dash ("base32 \\- base32 kod/afkode data" -> "base32 kod/afkode
    data"), in mdoc the `.Nd` description (".Nm biff" ".Nd bliv påmindet ..." -> "bliv påmindet ...").
    None when there is none or it is one word."""
    name, described, inside = [], None, False
    for line in source.splitlines():
        if line.startswith((".SH", ".Sh")):  # man(7) and mdoc section headings
            if inside:
                break
            inside = True
        elif not inside or line.startswith(('.\\"', "'\\\"")) or not line.strip():
            continue
        elif line.startswith(".Nd"):
            # mdoc gives the description its own macro, so there is no dash to look for.
            described = [line[3:].strip().strip('"')]
        elif line.startswith((".B ", ".I ")):
            (name if described is None else described).append(line[3:].replace('"', ""))
        elif not line.startswith((".", "'")):  # other macros (.Nm, .TH ...) name the page, not its summary
            (name if described is None else described).append(line)
    if described is not None:
        summary = _unescape(" ".join(described))
    else:
        _, dash, summary = _unescape(" ".join(name)).partition(" - ")
        summary = summary if dash else ""
    summary = " ".join(summary.split())
    return summary if len(summary.split()) >= 2 else None


def _cached_rows(lang: str, kind: str, rows_of_page) -> list[dict]:
    """Rows made from every page of the language's man page package by rows_of_page(doc, source),
    computed once and cached as JSON lines under cache_dir()/data/<package><kind>.jsonl."""
    if lang not in MANPAGE_PACKAGES:
        raise choices_error("man page language", lang, MANPAGE_PACKAGES)
    package = MANPAGE_PACKAGES[lang]
    target = cache_dir() / "data" / f"{package}{kind}.jsonl"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            deb = download_deb(package, Path(tmp))
            rows = []
            pages = [(n, b) for n, b in deb_members(deb) if f"/man/{lang}/man" in n and n.endswith(".gz")]
            for name, data in tqdm(sorted(pages), desc=package, disable=None):
                doc = "/".join(Path(name).parts[-2:]).removesuffix(".gz")
                rows += rows_of_page(doc, gzip.decompress(data).decode("utf-8", errors="replace"))
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        write_atomic(target, lambda tmp: tmp.write_text(lines, encoding="utf-8"))
    return [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]


def manpages(lang: str) -> list[dict]:
    """Paragraphs of the Danish or German man pages: [{"doc": "man1/ls", "text": ...}, ...]."""
    return _cached_rows(lang, "", lambda doc, source: [{"doc": doc, "text": p} for p in roff_paragraphs(source, lang)])


def _summary_row(doc: str, source: str, lang: str) -> list[dict]:
    summary = roff_summary(source)
    # The NAME line itself is no part of the document a summary finds.
    paragraphs = [p for p in roff_paragraphs(source, lang) if not summary or summary not in p]
    return [{"doc": doc, "summary": summary, "text": " ".join(paragraphs)}] if summary and paragraphs else []


# Part of the summaries' cache file name: a change to roff_summary or _summary_row bumps it, so the rows
# an older parser cached are not read again (2: mdoc pages give their .Nd description).
SUMMARY_PARSER_VERSION = 2

# The query instruction of a summary (a row's own: a recipe's query_instruction is for its other sources).
SUMMARY_INSTRUCTION = "Given the short description of a command, retrieve its manual page:"


def manpage_summaries(lang: str, max_chars: int = 300) -> list[Pair]:
    """Each page's NAME summary -> the start of its prose (cut at a word boundary before
    `max_chars`, as title_pairs cuts a help page); a summary several pages share is left out (no
    query with one answer), and so is a page whose text is only its summary."""
    rows = _cached_rows(lang, f"-summaries-v{SUMMARY_PARSER_VERSION}",
                        lambda doc, source: _summary_row(doc, source, lang))
    counts = Counter(row["summary"] for row in rows)
    return [Pair(row["summary"], clip(row["text"], max_chars), [], f"manpage-summaries-{lang}", SUMMARY_INSTRUCTION)
            for row in rows if counts[row["summary"]] == 1 and len(row["text"].split()) >= 8]


def manpage_documents(lang: str) -> list[str]:
    """One document per man page (its paragraphs joined by newlines), in the cached order."""
    docs: dict[str, list[str]] = {}
    for row in manpages(lang):
        docs.setdefault(row["doc"], []).append(row["text"])
    return ["\n".join(paragraphs) for paragraphs in docs.values()]
