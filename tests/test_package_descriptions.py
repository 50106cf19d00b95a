"""Debian's translated package descriptions as summary -> long description pairs
(data/package_descriptions.py, the `package-descriptions-da|de` pair sources)."""

import bz2

import pytest

from decoder2vec.atomic import CACHE_ENV
from decoder2vec.data import package_descriptions as pd
from decoder2vec.data import registry
from decoder2vec.data.languages import LANGUAGES
from decoder2vec.data.pair import Pair
from decoder2vec.data.pairs import load_pairs
from decoder2vec.errors import Decoder2VecError

# Three records as the mirror's Translation files write them: paragraphs split by " .", a record with
# only another language's field (skipped), and a description that another field follows (which ends it).
RECORDS = """\
Package: 0ad
Description-md5: d943033bedada21853d2ae54a2578a7b
Description-da: Realtids strategispil med historisk krigsførelse
 0 A.D. er et frit krigsspil
 for flere platforme.
 .
 Det er et realtids strategispil.

Package: tysk
Description-md5: 0123456789abcdef0123456789abcdef
Description-de: Nur auf Deutsch
 Dieses Paket hat keine dänische Beschreibung.

Package: felt
Description-md5: fedcba9876543210fedcba9876543210
Description-da: Værktøj med et ekstra felt
 Kun denne linje hører til beskrivelsen.
X-Extra: en anden værdi
 som ikke er en del af beskrivelsen
"""


def test_parse_descriptions_joins_lines_splits_paragraphs_and_stops_at_the_next_field():
    assert pd.parse_descriptions(RECORDS, "da") == [
        ("Realtids strategispil med historisk krigsførelse",
         "0 A.D. er et frit krigsspil for flere platforme.\nDet er et realtids strategispil."),
        ("Værktøj med et ekstra felt", "Kun denne linje hører til beskrivelsen."),
    ]
    assert pd.parse_descriptions(RECORDS, "de") == [
        ("Nur auf Deutsch", "Dieses Paket hat keine dänische Beschreibung.")]


def _record(package: str, summary: str, description: str) -> str:
    return f"Package: {package}\nDescription-md5: 00\nDescription-da: {summary}\n {description}\n"


def _cached_file(tmp_path, monkeypatch, records: list[str]) -> None:
    """A Translation file at the path translation_file reads, in a cache of its own: no network."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    target = tmp_path / "data" / "package-descriptions" / f"Translation-da-{pd.SUITE}.bz2"
    target.parent.mkdir(parents=True)
    target.write_bytes(bz2.compress("\n".join(records).encode("utf-8")))
    monkeypatch.setattr(pd, "MIRROR", "http://127.0.0.1:9/debian")  # a fetch would fail loudly


def test_shared_summaries_shared_descriptions_and_short_descriptions_are_left_out(tmp_path, monkeypatch):
    eight = "Et program der viser filer i en mappe."  # 8 words
    long_text = "Dette bibliotek læser og skriver billeder i mange formater, og det bruges af mange programmer."
    _cached_file(tmp_path, monkeypatch, [
        _record("a", "Delt resumé", "Den første pakke har denne tekst med mange ord i sig."),
        _record("b", "Delt resumé", "Den anden pakke har en helt anden tekst med mange ord."),
        _record("c", "Data til spillet", "Spillets data, grafik og lyd til det store spil foo."),
        _record("d", "Dokumentation til spillet", "Spillets data, grafik og lyd til det store spil foo."),
        _record("e", "Kort tekst", "Et program der viser filer i mappen."),  # 7 words
        _record("f", "Filviser", eight),
        _record("g", "Billedbibliotek", long_text),
    ])
    assert pd.package_descriptions("da", max_chars=60) == [
        Pair("Filviser", eight, [], "package-descriptions-da", pd.INSTRUCTION),
        # Cut at the last word boundary before 60 characters, as the other retrieval pairs are.
        Pair("Billedbibliotek", "Dette bibliotek læser og skriver billeder i mange formater,", [],
             "package-descriptions-da", pd.INSTRUCTION),
    ]


def test_a_pair_holding_an_evaluated_text_is_left_out(tmp_path, monkeypatch):
    # settings-retrieval-da's query "Skrifttype med fast bredde" inside a description, in any case.
    _cached_file(tmp_path, monkeypatch, [
        _record("fonts-a", "Terminalskrifttype", "Dette er en Skrifttype med fast bredde til terminaler og andet."),
        _record("appstream", "Redskab til at arbejde med AppStream-metadata", "Denne pakke tilbyder et redskab "
                "til at arbejde med AppStream-metadata, som bruger libappstream-glib."),
        _record("fonts-b", "Terminalskrifttype med runde former", "Dette er en smal skrifttype til terminaler og andet."),
    ])
    assert [p.query for p in pd.package_descriptions("da")] == ["Terminalskrifttype med runde former"]


def test_the_registry_serves_them_as_query_document_pairs(tmp_path, monkeypatch):
    _cached_file(tmp_path, monkeypatch, [_record("f", "Filviser", "Et program der viser filer i en mappe.")])
    assert load_pairs("package-descriptions-da") == [
        Pair("Filviser", "Et program der viser filer i en mappe.", [], "package-descriptions-da", pd.INSTRUCTION)]
    for code in ("da", "de"):
        assert registry.PAIR_SIDES[f"package-descriptions-{code}"] == ("query", "document")
        assert f"package-descriptions-{code}" in LANGUAGES[code].pairs


@pytest.mark.parametrize("call", [pd.translation_file, pd.package_descriptions])
def test_an_unknown_language_names_the_choices(call):
    with pytest.raises(Decoder2VecError) as info:
        call("sv")
    assert str(info.value) == "unknown package description language 'sv'; choose one of: da, de"


def test_an_unreachable_mirror_is_a_one_line_error_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(pd, "MIRROR", "http://127.0.0.1:9/debian")  # the discard port: refused at once
    with pytest.raises(Decoder2VecError) as info:
        pd.translation_file("da")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("cannot fetch Debian's package descriptions "
                              "http://127.0.0.1:9/debian/dists/bookworm/main/i18n/Translation-da.bz2 (")
    assert message.endswith(f"download it by hand to {tmp_path}/data/package-descriptions/"
                            "Translation-da-bookworm.bz2")
    assert not list((tmp_path / "data").rglob("*.bz2"))


@pytest.mark.real  # real data: ~7 MB from deb.debian.org into the real cache once (reachable in CI), ~3 s of CPU
def test_the_real_bookworm_files():
    danish = pd.package_descriptions("da")
    german = pd.package_descriptions("de")
    # bookworm is pinned: 44,175 Danish and 12,372 German pairs when this was written.
    assert 30_000 < len(danish) < 60_000
    assert 8_000 < len(german) < 20_000
    assert danish[0].query == "Realtids strategispil med historisk krigsførelse"
    assert danish[0].positive.startswith("0 A.D. (udtalt »zero ey-dee«) er et frit, open source krigsspil")
    assert german[0].query == "Echtzeit-Strategiespiel über antike Kriegsführung"
    # One query, one answer.
    for pairs in (danish, german):
        assert len({p.query for p in pairs}) == len(pairs)
        assert all(len(p.positive) <= 300 for p in pairs)
