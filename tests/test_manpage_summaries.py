"""Man page summaries as query -> document pairs (data/manpages.py), and a pair's own instruction
winning over the recipe's in distillation."""

import gzip

import numpy as np

from decoder2vec.atomic import CACHE_ENV
from decoder2vec.data import manpages, registry
from decoder2vec.data.pair import Pair
from decoder2vec.training import teacher as teacher_module
from decoder2vec.training.config import load_recipe
from decoder2vec.training.distill import distill_examples

PAGE = r""".\" a comment
.TH BASE32 "1" "2022" "GNU coreutils 9.1" "Brugerkommandoer"
.SH NAVN
base32 \- base32 kod/afkode data og udskriv
til standard\-ud
.SH SYNOPSIS
\fBbase32\fP [\fI\,FLAG\/\fP]... [\fI\,FIL\/\fP]
.SH BESKRIVELSE
.PP
Kod eller afkod FIL eller standard\-ind med Base32, og udskriv til standard\-ud her.
.SH FORFATTER
Skrevet af Simon Josefsson og mange andre gode folk fra projektet.
"""


def test_the_summary_is_the_whole_name_section_after_its_dash():
    assert manpages.roff_summary(PAGE) == "base32 kod/afkode data og udskriv til standard-ud"


# An mdoc page (OpenBSD's macros, as manpages-da's biff.1): .Sh headings, the name in .Nm, the summary in .Nd.
MDOC_PAGE = r""".\" a comment
.Dd August 15, 1999
.Dt BIFF 1
.Os
.Sh NAVN
.Nm biff
.Nd "bliv påmindet hvis post ankommer og hvem det er fra"
.Sh SYNOPSIS
.Nm biff
.Op Cm ny
.Sh BESKRIVELSE
Programmet informerer systemet om du ønsker at blive påmindet, når post ankommer under sessionen.
"""


def test_an_mdoc_page_summary_is_its_nd_description():
    assert manpages.roff_summary(MDOC_PAGE) == "bliv påmindet hvis post ankommer og hvem det er fra"
    assert manpages.roff_summary(".Sh NAME\n.Nm ls\n.Nd list directory \\(em contents\n.Sh SYNOPSIS\n") == \
        "list directory – contents"
    assert manpages.roff_summary(".Sh NAME\n.Nm ls\n.Nd list\n.Sh SYNOPSIS\n") is None  # one word


def test_a_man_page_summary_joins_its_name_lines_and_bold_macros_after_the_dash():
    page = ".TH LS 1\n.SH NAME\n.B ls\n\\- list \\fIdirectory\\fP\n.I contents\n.SH SYNOPSIS\nls [x]\n"
    assert manpages.roff_summary(page) == "list directory contents"


def test_a_name_line_without_a_dash_or_with_one_word_has_no_summary():
    assert manpages.roff_summary(".SH NAME\nbase32\n.SH SYNOPSIS\nx\n") is None
    assert manpages.roff_summary(".SH NAME\nbase32 \\- kod\n.SH SYNOPSIS\nx\n") is None


def test_a_summary_row_keeps_the_prose_and_leaves_out_the_name_and_boilerplate():
    rows = manpages._summary_row("man1/base32", PAGE, "da")
    assert rows == [{"doc": "man1/base32", "summary": "base32 kod/afkode data og udskriv til standard-ud",
                     "text": "Kod eller afkod FIL eller standard-ind med Base32, og udskriv til standard-ud her."}]


def test_an_mdoc_summary_row_keeps_the_description_prose():
    assert manpages._summary_row("man1/biff", MDOC_PAGE, "da") == [{
        "doc": "man1/biff", "summary": "bliv påmindet hvis post ankommer og hvem det er fra",
        "text": "Programmet informerer systemet om du ønsker at blive påmindet, når post ankommer under sessionen."}]


def test_summaries_cached_by_an_older_parser_are_not_read(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    (tmp_path / "data").mkdir()
    stale = '{"doc": "man1/old", "summary": "en gammel række", "text": "' + "ord " * 10 + '"}\n'
    (tmp_path / "data" / "manpages-da-summaries.jsonl").write_text(stale, encoding="utf-8")
    monkeypatch.setattr(manpages, "download_deb", lambda package, into: into / f"{package}.deb")
    monkeypatch.setattr(manpages, "deb_members", lambda deb: [
        ("./usr/share/man/da/man1/biff.1.gz", gzip.compress(MDOC_PAGE.encode()))])
    pairs = manpages.manpage_summaries("da")
    assert [(p.query, p.positive) for p in pairs] == [
        ("bliv påmindet hvis post ankommer og hvem det er fra",
         "Programmet informerer systemet om du ønsker at blive påmindet, når post ankommer under sessionen.")]
    assert (tmp_path / "data" / f"manpages-da-summaries-v{manpages.SUMMARY_PARSER_VERSION}.jsonl").exists()


def test_summaries_shared_by_two_pages_are_left_out_and_pairs_carry_their_instruction(monkeypatch):
    rows = [{"doc": "a", "summary": "vis filer i mappen", "text": "Ordet er " * 5},
            {"doc": "b", "summary": "vis filer i mappen", "text": "Andet ord " * 5},
            {"doc": "c", "summary": "kopier filer og mapper", "text": "Kopier KILDE til MÅL, eller flere KILDER til MAPPE."}]
    monkeypatch.setattr(manpages, "_cached_rows", lambda lang, kind, rows_of_page: rows)
    pairs = manpages.manpage_summaries("da")
    assert pairs == [Pair("kopier filer og mapper", rows[2]["text"], [], "manpage-summaries-da",
                          manpages.SUMMARY_INSTRUCTION)]
    assert registry.PAIR_SIDES["manpage-summaries-da"] == ("query", "document")


def test_a_pairs_own_instruction_wins_over_the_recipes(monkeypatch, tmp_path):
    own = [Pair("kopier filer og mapper", "Kopier KILDE til MÅL eller flere.", [], "manpage-summaries-da", "Own:")]
    titles = [Pair("Animation", "En side om animation og effekter i Impress.", [], "libreoffice-titles-da-train")]
    monkeypatch.setitem(registry.PAIRS, "manpage-summaries-da", lambda **_: own)
    monkeypatch.setitem(registry.PAIRS, "libreoffice-titles-da-train", lambda **_: titles)
    config = load_recipe({"stage": "distill", "model": "tiny", "teacher": "minilm", "output_dir": str(tmp_path),
                          "data": ["manpage-summaries-da", "libreoffice-titles-da-train"],
                          "query_instruction": "Recipe:"})
    found = {e.texts[0]: e.instruction for e in distill_examples(config)}
    assert found == {"kopier filer og mapper": "Own:", "Animation": "Recipe:"}
