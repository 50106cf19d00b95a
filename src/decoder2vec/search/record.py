"""The index record, `decoder2vec_index.json` beside the LanceDB table: which corpus output the
vectors came from, which Encoder and encode options made them, what the query side must use, and
how far the build got (the shards added and the table version after each, so an interrupted build
resumes from a version it knows).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..corpus import corpus_settings, fingerprint_of_encoder
from ..atomic import write_json_atomic
from ..errors import Decoder2VecError
from .vectors import PACKED

RECORD = "decoder2vec_index.json"
FORMAT = "decoder2vec-index/1"
KIND = "search index"  # the atomic.py marker's kind
TABLE = "corpus"
# The encode options that decide what a stored vector is; the query is encoded with the same ones.
OPTIONS = ("instruction", "normalize_embeddings", "truncate_dim", "precision")
# Load options of `decoder2vec encode` (not part of the Encoder's config) that `search` reuses.
LOAD_OPTIONS = ("dtype", "quantize", "backend")


def encoder_keys(config) -> dict:
    """The Encoder's own keys, as the corpus manifest records them (corpus_settings decides which)."""
    keys = corpus_settings(config, [])
    keys.pop("inputs")
    return keys


def read_record(db: Path) -> dict:
    path = Path(db) / RECORD
    if not Path(db).is_dir():
        raise Decoder2VecError(f"index {str(db)!r} not found: build one with `decoder2vec index SHARDS --output {db}`")
    if not path.is_file():
        raise Decoder2VecError(f"{str(db)!r} is not a decoder2vec index (no {RECORD}); build one with "
                               f"`decoder2vec index SHARDS --output FOLDER`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("format") != FORMAT:
            raise ValueError(f"format {record.get('format')!r}")
        record["encoder"], record["options"], record["shards"]  # noqa: B018 (keys that must be there)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Decoder2VecError(f"{path}: not a readable index record ({exc}); rebuild the index") from None
    return record


def write_record(db: Path, record: dict) -> None:
    write_json_atomic(Path(db) / RECORD, record)


def check_encoder(record: dict, encoder, db) -> None:
    """Refuse an Encoder whose vectors would not be comparable with the index's, naming the key."""
    mine = encoder_keys(encoder.config)
    theirs = record["encoder"]
    for key in sorted(set(mine) & set(theirs)):
        if mine[key] != theirs[key]:
            raise Decoder2VecError(
                f"{db} holds vectors of another Encoder ({key}: index {theirs[key]!r}, this Encoder "
                f"{mine.get(key)!r}); search with the Encoder that encoded the corpus"
                + (f" ({record['model']})" if record.get("model") else ""))
    recorded = theirs.get("model_fingerprint")
    if recorded is not None:
        mine = fingerprint_of_encoder(encoder)
        if mine != recorded:
            raise Decoder2VecError(
                f"{db} holds vectors of another Encoder (model_fingerprint: index {recorded!r}, this Encoder "
                f"{mine!r}): the model's files or weights are not the ones the corpus was encoded with"
                + (f" ({record['model']})" if record.get("model") else ""))
    dimension = record["options"].get("truncate_dim") or encoder.dimension
    width = (dimension + 7) // 8 if record["options"].get("precision") in PACKED else dimension
    if width != record["dimension"]:
        raise Decoder2VecError(f"{db} holds vectors {record['dimension']} wide; this Encoder makes them {width} wide "
                               f"({dimension} dimensions, {record['options'].get('precision')})")
