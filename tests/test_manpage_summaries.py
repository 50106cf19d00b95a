"""Man page summaries as query -> document pairs (data/manpages.py), and a pair's own instruction
winning over the recipe's in distillation."""

import numpy as np

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


def test_a_name_line_without_a_dash_or_with_one_word_has_no_summary():
    assert manpages.roff_summary(".SH NAME\nbase32\n.SH SYNOPSIS\nx\n") is None
    assert manpages.roff_summary(".SH NAME\nbase32 \\- kod\n.SH SYNOPSIS\nx\n") is None


def test_a_summary_row_keeps_the_prose_and_leaves_out_the_name_and_boilerplate():
    rows = manpages._summary_row("man1/base32", PAGE, "da")
    assert rows == [{"doc": "man1/base32", "summary": "base32 kod/afkode data og udskriv til standard-ud",
                     "text": "Kod eller afkod FIL eller standard-ind med Base32, og udskriv til standard-ud her."}]


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
