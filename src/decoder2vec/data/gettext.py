"""Translated message catalogs from Debian: Danish and German evaluation data that no recipe reads.

Free software translates its user interface with GNU gettext: each `.mo` catalog maps an English
message (msgid) to a human translation (msgstr), and Debian ships the da and de catalogs in the
packages below. Two evaluation sources come from them:

- `message_pairs(lang)`: English message -> its Danish/German translation, from the catalogs of
  `BITEXT_PACKAGES` (GTK widget properties, GLib, GnuPG, GStreamer, AppStream, PackageKit):
  desktop and system software, not LibreOffice, not man pages (the CLI tools whose --help texts
  the man pages repeat are left out on purpose);
- `gsettings_keys()`: every GNOME desktop setting of `gsettings-desktop-schemas`, its short
  summary and its longer description in en/da/de (the schema XML gives the English pairs, the
  package's catalog their translations).

EVALUATION ONLY: `EVALUATION_SOURCES` names them, data/registry.py refuses a training source
with one of these names, and tests/test_languages.py checks that no training text contains an
evaluation message. Fetched with `apt-get download` (nothing installed), parsed once into
`cache_dir()/data/gettext/<package>.json` (atomic write).
"""

from __future__ import annotations

import json
import struct
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from ..atomic import cache_dir, write_json_atomic
from ..errors import Decoder2VecError, choices_error
from .debian import deb_members, download_deb

LANGUAGES = ("da", "de")
# package -> its gettext domain (the .mo file's name)
BITEXT_PACKAGES = {
    "libgtk2.0-common": "gtk20-properties",
    "libglib2.0-data": "glib20",
    "gnupg-l10n": "gnupg2",
    "libgstreamer1.0-0": "gstreamer-1.0",
    "appstream": "appstream",
    "packagekit": "PackageKit",
}
GSETTINGS_PACKAGE = "gsettings-desktop-schemas"
GSETTINGS_DOMAIN = "gsettings-desktop-schemas"
# The evaluation sources (task `source:` values) built on these packages: never training data.
EVALUATION_SOURCES = {"gettext": tuple(BITEXT_PACKAGES), "gsettings": (GSETTINGS_PACKAGE,)}
APT_PACKAGES = (*BITEXT_PACKAGES, GSETTINGS_PACKAGE)


def read_mo(data: bytes) -> dict[str, str]:
    """msgid -> msgstr of a compiled gettext catalog. The header (empty msgid) and plural entries
    are left out; a message with a context ("ctx\\x04msgid") is keyed by its msgid."""
    if len(data) < 20:
        raise Decoder2VecError(f"not a gettext .mo catalog ({len(data)} bytes)")
    magic = struct.unpack("<I", data[:4])[0]
    order = {0x950412DE: "<", 0xDE120495: ">"}.get(magic)
    if order is None:
        raise Decoder2VecError(f"not a gettext .mo catalog (magic {magic:#x})")
    _, count, originals, translations = struct.unpack(order + "4I", data[4:20])
    messages = {}
    for i in range(count):
        length, offset = struct.unpack(order + "2I", data[originals + 8 * i:originals + 8 * i + 8])
        msgid = data[offset:offset + length].decode("utf-8", errors="replace")
        length, offset = struct.unpack(order + "2I", data[translations + 8 * i:translations + 8 * i + 8])
        msgstr = data[offset:offset + length].decode("utf-8", errors="replace")
        if not msgid or "\x00" in msgid:
            continue
        messages[msgid.split("\x04", 1)[-1]] = msgstr
    return messages


def _schema_keys(xml: bytes) -> list[dict]:
    """(schema id, key name, English summary, English description) of every key that has both."""
    rows = []
    root = ET.fromstring(xml)
    for schema in root.iter("schema"):
        for key in schema.iter("key"):
            summary, description = key.find("summary"), key.find("description")
            if summary is None or description is None:
                continue
            rows.append({"schema": schema.get("id", ""), "key": key.get("name", ""),
                         "summary": summary.text or "", "description": description.text or ""})
    return rows


def _parse_package(deb: Path, package: str) -> dict:
    domain = BITEXT_PACKAGES.get(package, GSETTINGS_DOMAIN)
    catalogs, schemas = {}, []
    for name, data in deb_members(deb):
        parts = Path(name).parts
        if name.endswith(f"/LC_MESSAGES/{domain}.mo") and len(parts) >= 3 and parts[-3] in LANGUAGES:
            catalogs[parts[-3]] = read_mo(data)
        elif name.endswith(".gschema.xml"):
            schemas += _schema_keys(data)
    missing = [lang for lang in LANGUAGES if lang not in catalogs]
    if missing:
        raise Decoder2VecError(f"{deb.name} has no {domain}.mo for {', '.join(missing)}")
    return {"package": package, "deb": deb.name, "catalogs": catalogs, "schemas": schemas}


def package_data(package: str) -> dict:
    """{"package", "deb", "catalogs": {lang: {msgid: msgstr}}, "schemas": [...]} of one package,
    fetched and parsed once."""
    if package not in APT_PACKAGES:
        raise choices_error("translated catalog package", package, APT_PACKAGES)
    target = cache_dir() / "data" / "gettext" / f"{package}.json"
    if target.exists():
        return json.loads(target.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        parsed = _parse_package(download_deb(package, Path(tmp)), package)
    write_json_atomic(target, parsed, indent=None)
    return parsed


def clean(message: str) -> str:
    """One line: whitespace collapsed (catalogs keep the source's line breaks)."""
    return " ".join(message.split())


def message_pairs(lang: str) -> list[tuple[str, str, str]]:
    """(English, translation, package) of every translated message of the bitext packages, in
    package order then catalog order; whitespace collapsed, untranslated messages left out."""
    if lang not in LANGUAGES:
        raise choices_error("catalog language", lang, LANGUAGES)
    pairs = []
    for package in BITEXT_PACKAGES:
        for msgid, msgstr in package_data(package)["catalogs"][lang].items():
            english, translated = clean(msgid), clean(msgstr)
            if english and translated and translated != english:
                pairs.append((english, translated, package))
    return pairs


def gsettings_keys() -> list[dict]:
    """Every desktop setting with a summary and a description, each in en/da/de:
    [{"schema", "key", "summary": {"en", "da", "de"}, "description": {...}}]; a translation the
    catalog lacks is None."""
    data = package_data(GSETTINGS_PACKAGE)
    catalogs = {lang: {clean(k): clean(v) for k, v in data["catalogs"][lang].items()} for lang in LANGUAGES}
    keys = []
    for row in data["schemas"]:
        texts = {}
        for field in ("summary", "description"):
            english = clean(row[field])
            texts[field] = {"en": english, **{lang: catalogs[lang].get(english) or None for lang in LANGUAGES}}
        keys.append({"schema": row["schema"], "key": row["key"], **texts})
    return keys
