"""`build_index`: the Parquet shards of a corpus encode into a LanceDB table, one shard per commit,
then an ANN index when the table is large enough.

Resumable: each shard is one `table.add` (a Lance commit: the table has all of a shard or none of
it), and the record lists the shards added and the table version after each. A build killed at
any point is resumed by the same call: a commit the record does not know (killed between the add
and the record) is rolled back to the recorded version, so no row is added twice and none is lost.
The text of each row comes from the shards when the text column was carried (`--carry text`),
else from the encode's own inputs, read again with the same reader and checked id by id.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import lancedb
import pyarrow as pa
import pyarrow.parquet as pq
from lancedb.index import HnswSq, IvfFlat, IvfPq
from tqdm.auto import tqdm

from ..atomic import check_output_folder, record_output
from ..corpus import first_rows, is_empty, manifest_path, read_chunks
from ..errors import Decoder2VecError, choices_error
from ..folder.config import EncoderConfig
from .record import FORMAT, KIND, LOAD_OPTIONS, OPTIONS, TABLE, encoder_keys, read_record, write_record
from .vectors import PACKED, metric_of, stored_type, to_stored

# Below this many rows, search is exact (a flat scan: about 90 ms a query over 122,765 float32
# vectors of 576 dims on the 2-core test machine, docs/scale.md); from it, "auto" builds an ANN index.
EXACT_BELOW = 100_000
INDEX_TYPES = ("auto", "exact", "ivf_pq", "ivf_hnsw_sq", "ivf_flat")
# What the manifest records about the model's files beyond corpus_settings' keys (corpus/fingerprint.py).
FINGERPRINTS = {"model_fingerprint"}
RESERVED = ("id", "text", "vector", "_distance", "_rowid")


def build_index(
    shards: str | os.PathLike,
    output: str | os.PathLike,
    *,
    query_instruction: str | None = None,
    index_type: str = "auto",
    show_progress_bar: bool | None = None,
) -> dict:
    """Load the shards of a finished corpus encode (`encode_corpus` / `decoder2vec encode` into a
    folder) into a LanceDB table in `output`, with ids, texts and carried columns, and index it.

    query_instruction: the instruction queries are encoded with (the corpus side's is the encode's
    `instruction`, recorded in its manifest). index_type: "auto" (exact below EXACT_BELOW rows, else
    IVF-HNSW-SQ for float vectors and IVF-FLAT for binary), "exact" (no index), or a LanceDB index.
    Returns the record (`decoder2vec_index.json`)."""
    if index_type not in INDEX_TYPES:
        raise choices_error("index_type", index_type, INDEX_TYPES)
    if query_instruction is not None and not isinstance(query_instruction, str):
        raise Decoder2VecError(f"query_instruction must be a string or None, got {query_instruction!r}")
    shards = Path(shards)
    manifest = read_manifest(shards)
    settings = manifest["settings"]
    precision = settings.get("precision", "float32")
    if index_type in ("ivf_pq", "ivf_hnsw_sq") and precision in PACKED:
        raise Decoder2VecError(f"{precision} vectors are searched by hamming distance, which only index_type "
                               f"'ivf_flat' (or 'exact') supports; got {index_type!r}")
    db = check_output_folder(Path(output), kind=KIND)
    if db.resolve() == shards.resolve() or shards.resolve() in db.resolve().parents:
        raise Decoder2VecError(f"the index {str(output)!r} would be inside the corpus output {str(shards)!r} (Parquet "
                               "readers of that folder would meet the table's files); choose a folder beside it")
    wanted = {"format": FORMAT, "source": str(shards.resolve()), "model": manifest.get("model"),
              "encoder": {k: settings[k] for k in encoder_keys(EncoderConfig()).keys() | FINGERPRINTS if k in settings},
              "options": {k: settings.get(k) for k in OPTIONS},
              "load": {k: settings.get(k) for k in LOAD_OPTIONS},
              "query_instruction": query_instruction, "index_type": index_type,
              "dimension": manifest["dimension"], "calibration": manifest.get("calibration"),
              "metric": metric_of(precision)}
    record = _start(db, wanted)
    if record["complete"]:
        return record
    table = _open_table(db, record, _schema(shards, manifest, precision))
    todo = manifest["shards"][len(record["shards"]):]
    texts = _TextSource(shards, manifest, todo[0]["first_row"] if todo else 0)
    show = show_progress_bar if show_progress_bar is not None else _stderr_is_tty()
    with tqdm(total=manifest["rows"], initial=record["rows"], unit="rows", desc="index", disable=not show) as bar:
        for shard in todo:
            data = _table_of(shards, shard, texts, table.schema, precision)
            table.add(data)
            record["shards"].append(shard["file"])
            record["rows"] += data.num_rows
            record["version"] = table.version
            write_record(db, record)
            bar.update(data.num_rows)
    if table.count_rows() != manifest["rows"]:
        raise Decoder2VecError(f"{db}: the table has {table.count_rows()} rows, the corpus {manifest['rows']}; "
                               "choose a new output folder and build again")
    started = time.perf_counter()
    record["index"] = _index(table, index_type, precision, record["rows"])
    record["index_seconds"] = round(time.perf_counter() - started, 3)
    record["version"] = table.version
    record["complete"] = True
    write_record(db, record)
    record_output(db, KIND)
    return record


def read_manifest(shards: Path) -> dict:
    """A finished corpus output's manifest (found where the corpus package puts it)."""
    path = manifest_path(shards)
    if not shards.is_dir():
        raise Decoder2VecError(f"{str(shards)!r} is not a folder of corpus shards (`decoder2vec encode --output FOLDER`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["settings"], manifest["shards"]  # noqa: B018
    except FileNotFoundError:
        raise Decoder2VecError(f"{str(shards)!r} is not a corpus output: no {path.name} "
                               "(encode with `decoder2vec encode --output FOLDER`)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Decoder2VecError(f"{path}: not a readable corpus manifest ({type(exc).__name__})") from None
    if not manifest.get("complete"):
        raise Decoder2VecError(f"{shards}: the corpus encode has not finished ({manifest.get('rows_read', 0)} rows "
                               "read); run the same `decoder2vec encode` command to finish it, then index")
    return manifest


def _start(db: Path, wanted: dict) -> dict:
    if (db / "decoder2vec_index.json").is_file():
        record = read_record(db)
        differing = [f"{key}: {record.get(key)!r} -> {value!r}" for key, value in wanted.items()
                     if record.get(key) != value]
        if differing:
            raise Decoder2VecError(f"{db} holds an index built with other settings ({'; '.join(differing)}); "
                                   "run the same command to resume it, or choose a new output folder")
        return record
    db.mkdir(parents=True, exist_ok=True)
    record_output(db, KIND)  # marks the folder as decoder2vec's before the table exists
    record = {**wanted, "table": TABLE, "complete": False, "rows": 0, "shards": [], "version": None, "index": None}
    write_record(db, record)
    return record


def _open_table(db: Path, record: dict, schema: pa.Schema):
    conn = lancedb.connect(db)
    if record["version"] is None:
        # Killed after create_table and before the record: the table is ours and empty; start over.
        table = conn.create_table(TABLE, schema=schema, mode="overwrite")
        record["version"] = table.version
        write_record(db, record)
        return table
    try:
        table = conn.open_table(TABLE)
        if table.version != record["version"]:
            table.restore(record["version"])  # a commit the record never heard of: undo it
            record["version"] = table.version
            write_record(db, record)
        rows = table.count_rows()
    except Exception as exc:  # lance raises ValueError/OSError/RuntimeError for a damaged table
        raise corrupted(db, exc) from None
    if rows != record["rows"]:
        raise Decoder2VecError(f"{db}: table {TABLE!r} has {rows} rows at version {record['version']}, the record "
                               f"{record['rows']}; choose a new output folder and build again")
    return table


def corrupted(db, exc: Exception) -> Decoder2VecError:
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return Decoder2VecError(f"{db}: the index table cannot be read ({first}); rebuild it with `decoder2vec index` "
                            "into a new folder")


def _schema(shards: Path, manifest: dict, precision: str) -> pa.Schema:
    if not manifest["shards"]:
        raise Decoder2VecError(f"{shards}: the corpus output has no vectors (every text was empty?)")
    shard_schema = pq.read_schema(shards / manifest["shards"][0]["file"])
    text_column = manifest["settings"].get("text_column", "text")
    width = shard_schema.field("embedding").type.list_size
    carried = [f for f in shard_schema if f.name not in ("id", "embedding", text_column)]
    for field in carried:
        if field.name in RESERVED:
            raise Decoder2VecError(f"{shards}: the carried column {field.name!r} would clash with the index's own "
                                   f"{', '.join(RESERVED)}; encode again without --carry {field.name}")
    return pa.schema([shard_schema.field("id"), pa.field("text", pa.string()),
                      pa.field("vector", stored_type(precision, width)), *carried])


def _table_of(shards: Path, shard: dict, texts: "_TextSource", schema: pa.Schema, precision: str) -> pa.Table:
    path = shards / shard["file"]
    try:
        part = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise Decoder2VecError(f"{path}: cannot read this shard ({str(exc).splitlines()[0]})") from None
    if part.num_rows != shard["rows"]:
        raise Decoder2VecError(f"{path} has {part.num_rows} rows; the manifest says {shard['rows']}")
    ids = part["id"].to_pylist()
    columns = {"id": part["id"], "text": pa.array(texts.take(shard, ids, part), pa.string()),
               "vector": to_stored(part["embedding"].combine_chunks(), precision)}
    for field in schema:
        if field.name not in columns:
            columns[field.name] = part[field.name]
    return pa.table(columns).cast(schema)


class _TextSource:
    """The text of each shard's rows: the carried text column, else the encode's inputs read again
    (the same reader, from the first shard still to add), every id checked against the shard's."""

    def __init__(self, shards: Path, manifest: dict, start_row: int):
        settings = manifest["settings"]
        self.shards, self.column = shards, settings.get("text_column", "text")
        self.rows = None
        if self.column in pq.read_schema(shards / manifest["shards"][0]["file"]).names:
            return
        files = []
        for entry in settings.get("inputs", []):
            path = Path(entry["path"])
            if not path.is_file():
                raise Decoder2VecError(
                    f"{shards}: the shards hold no {self.column!r} column and the input {path} is gone; keep the "
                    f"inputs, or encode with --carry {self.column} so the texts travel with the vectors")
            if path.stat().st_size != entry["bytes"]:
                raise Decoder2VecError(f"{path} changed since it was encoded ({entry['bytes']} bytes then, "
                                       f"{path.stat().st_size} now); encode it again, or with --carry {self.column}")
            files.append(path)
        self.rows = self._rows(files, settings, start_row)

    @staticmethod
    def _rows(files, settings, start_row):
        chunks = read_chunks(files, text_column=settings.get("text_column", "text"), id_column=settings.get("id_column"),
                             chunk_rows=settings.get("shard_rows", 10_000), start_row=start_row,
                             offsets=first_rows(files))
        for chunk in chunks:
            for i, (row_id, text) in enumerate(zip(chunk.ids, chunk.texts)):
                yield chunk.first_row + i, row_id, text, chunk.location(i)

    def take(self, shard: dict, ids: list, part: pa.Table) -> list:
        if self.rows is None:
            return part[self.column].to_pylist()
        texts = []
        for row, row_id, text, where in self.rows:
            if row < shard["first_row"]:
                continue
            if not is_empty(text):
                if len(texts) >= len(ids) or ids[len(texts)] != row_id:
                    raise Decoder2VecError(f"{where}: id {row_id!r} is not the shard's next id; the inputs changed "
                                           f"since they were encoded: encode them again")
                texts.append(text)
            if row + 1 >= shard["end_row"]:
                break
        if len(texts) != len(ids):
            raise Decoder2VecError(f"{self.shards / shard['file']}: {len(ids)} rows but {len(texts)} texts in the "
                                   "inputs' rows it covers; the inputs changed since they were encoded")
        return texts


def _index(table, index_type: str, precision: str, rows: int) -> dict | None:
    if index_type == "auto":
        index_type = "exact" if rows < EXACT_BELOW else "ivf_flat" if precision in PACKED else "ivf_hnsw_sq"
    if index_type == "exact":
        return None
    metric = metric_of(precision)
    # sqrt(rows) partitions (LanceDB's guidance), at least ~100 rows each so small tables still train.
    # With dot distance (int8 levels) LanceDB's k-means collapses: "Cannot create 350 IVF partitions:
    # k-means could only form 6 non-empty clusters" on 122,765 rows; one partition, and the HNSW
    # graph does the work.
    partitions = 1 if metric == "dot" else max(1, min(round(math.sqrt(rows)), rows // 100))
    config = {"ivf_pq": lambda: IvfPq(distance_type=metric, num_partitions=partitions),
              "ivf_hnsw_sq": lambda: HnswSq(distance_type=metric, num_partitions=partitions),
              "ivf_flat": lambda: IvfFlat(distance_type=metric, num_partitions=partitions)}[index_type]()
    try:
        table.create_index("vector", config=config, replace=True)
    except Exception as exc:
        raise Decoder2VecError(f"building the {index_type} index failed: {str(exc).splitlines()[0][:300]}") from None
    return {"type": index_type, "metric": metric, "num_partitions": partitions}


def _stderr_is_tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
