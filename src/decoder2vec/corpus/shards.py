"""A folder of embedding shards: Parquet files (`id`, `embedding`, carried columns) and a manifest.

Each shard appears complete or not at all (written to a temporary name, then renamed), and the
manifest (`_manifest.json`, also replaced atomically) lists the complete shards with the input rows
they cover. Its name starts with "_", like Spark's `_SUCCESS`, so Parquet readers given the folder
(pyarrow.dataset, pandas.read_parquet, Ray Data, DuckDB, Spark) skip it and read only the shards;
folders written before it was renamed (`manifest.json`) are still read. A run killed at any point resumes after the last shard in the manifest; a shard file
renamed in but not yet listed is simply written again under the same name, so no row is written
twice. The local and the Ray engine write this same layout.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import check_output_folder, record_output, write_atomic, write_error, write_json_atomic
from ..errors import Decoder2VecError
from .output_files import check_output_file

MANIFEST = "_manifest.json"
LEGACY_MANIFEST = "manifest.json"  # the name before readers were given the folder
KIND = "embeddings"
FORMAT = "decoder2vec-embeddings/1"
PARTIAL = ".decoder2vec-partial-"  # in the temporary names of atomic.write_atomic
# Settings that do not change a written row: a run may resume with other values.
RESUMABLE_CHANGES = ("on_empty", "batch_size", "device", "compile", "engine", "num_workers", "address")


def manifest_path(folder: str | os.PathLike) -> Path:
    """The manifest of a shard folder: `_manifest.json`, or an older folder's `manifest.json`."""
    folder = Path(folder)
    legacy = folder / LEGACY_MANIFEST
    return legacy if not (folder / MANIFEST).exists() and legacy.is_file() else folder / MANIFEST


def embedding_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """(rows, dim) vectors as a fixed-size list column of their own dtype (float32, int8, uint8)."""
    vectors = np.ascontiguousarray(vectors)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def shard_table(ids: list, vectors: np.ndarray, columns: dict | None = None,
                schema: pa.Schema | None = None) -> pa.Table:
    """The shard schema: `id`, `embedding`, then carried columns in the order given. With `schema`
    (the first shard's), later shards are cast to it so every shard reads as one dataset."""
    table = pa.table({"id": pa.array(ids), "embedding": embedding_array(vectors),
                      **{name: pa.array(values) for name, values in (columns or {}).items()}})
    if schema is not None and table.schema != schema:
        try:
            table = table.cast(schema)
        except (pa.ArrowException, ValueError) as exc:
            raise Decoder2VecError(f"a shard's columns do not match the first shard's ({schema}): {exc}") from None
    return table


def check_output_path(output: str | os.PathLike, overwrite: bool = False) -> tuple[Path, str]:
    """Where vectors go and how, checked before any model load or encoding: "npy" or "parquet" for a
    single file, "shards" for a folder (no suffix, a trailing slash, or an existing folder).
    An existing file is replaced only with overwrite=True, and only if decoder2vec wrote it
    (output_files); a folder resumes instead, so overwrite does not apply to it."""
    text = str(output)
    path = Path(output)
    suffix = path.suffix.lower()
    if text.endswith(("/", os.sep)) or path.is_dir() or not suffix:
        if path.is_dir() and suffix in (".npy", ".parquet"):
            raise Decoder2VecError(f"output {text!r} is a folder; name a {suffix} file, or a folder without "
                                   "a suffix for Parquet shards")
        if overwrite:
            raise Decoder2VecError(f"--overwrite (overwrite=True) applies to a .npy or .parquet output; the folder "
                                   f"{text!r} resumes an earlier run instead (choose a new folder to start over)")
        check_output_folder(path, kind=KIND)
        _check_writable(path)
        return path, "shards"
    if suffix not in (".npy", ".parquet"):
        raise Decoder2VecError(f"unsupported output type {suffix!r} for {text}; use .npy, .parquet, or a folder "
                               "for Parquet shards")
    _check_writable(path.parent)
    check_output_file(path, [ids_file(path)] if suffix == ".npy" else [], overwrite=overwrite)
    return path, suffix[1:]


def ids_file(npy: Path) -> Path:
    """`vectors.npy` -> `vectors.ids.json`: the ids of the .npy's rows, in order."""
    return npy.with_name(npy.stem + ".ids.json")


def _check_writable(folder: Path) -> None:
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise Decoder2VecError(f"cannot write into {str(folder)!r}: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise Decoder2VecError(f"cannot write into {str(folder)!r}: {str(existing)!r} is not writable")


class ShardFolder:
    """Writes shards and the manifest into `folder`; resumes an earlier run with the same settings."""

    def __init__(self, folder: str | os.PathLike, settings: dict):
        self.folder = check_output_folder(Path(folder), kind=KIND)
        self.path = self.folder / MANIFEST
        self.manifest = self._load(settings)
        self.schema = None
        if self.manifest["shards"]:
            self.schema = pq.read_schema(self.folder / self.manifest["shards"][0]["file"])
        self._clean_partials()

    def _load(self, settings: dict) -> dict:
        found = manifest_path(self.folder)
        if found.is_file():
            try:
                manifest = json.loads(found.read_text(encoding="utf-8"))
                recorded = manifest["settings"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise Decoder2VecError(f"{found}: not a readable manifest ({type(exc).__name__}); "
                                       "choose a new output folder") from None
            check_resumable(self.folder, settings)
            differing = settings_differ(recorded, settings)
            if differing:  # a key only one side has (e.g. written by another decoder2vec version)
                raise Decoder2VecError(other_settings(self.folder, differing))
            manifest["settings"] = {**recorded, **settings}
            if found != self.path:  # an older folder: its manifest takes the name readers skip
                write_json_atomic(self.path, manifest)
                found.unlink()
            return manifest
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            record_output(self.folder, KIND)  # marks the folder as decoder2vec's before any shard exists
        except OSError as exc:
            raise Decoder2VecError(write_error(self.folder, exc)) from None
        manifest = {"format": FORMAT, "model": settings.get("model"), "settings": settings, "complete": False,
                    "rows": 0, "rows_read": 0, "tokens": 0, "seconds": 0.0, "skipped_ids": [],
                    "calibration": None, "shards": []}
        write_json_atomic(self.path, manifest)
        return manifest

    def _clean_partials(self) -> None:
        # Only files atomic.write_atomic names `.NAME.decoder2vec-partial-N-PID` with a dead PID: ours, left by a kill.
        for leftover in self.folder.glob(f".*{PARTIAL}*"):
            pid = leftover.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                leftover.unlink(missing_ok=True)

    @property
    def next_row(self) -> int:
        """The first input row no complete shard covers."""
        return self.manifest["shards"][-1]["end_row"] if self.manifest["shards"] else 0

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    def write(self, table: pa.Table, *, first_row: int, end_row: int, skipped_ids: list, tokens: int,
              seconds: float, extra: dict | None = None) -> None:
        """Add one shard covering input rows [first_row, end_row); `extra` updates the manifest
        (e.g. the int8 calibration ranges fixed by the first shard)."""
        if first_row != self.next_row:
            raise RuntimeError(f"shard starts at row {first_row}, expected {self.next_row}")
        if self.schema is None:
            self.schema = table.schema
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        name = f"shard-{len(self.manifest['shards']):06d}.parquet"
        try:
            write_atomic(self.folder / name, lambda tmp: pq.write_table(table, tmp))
        except Decoder2VecError as exc:
            raise Decoder2VecError(f"{exc}; the {len(self.manifest['shards'])} complete shards are kept: make room "
                                   "and run the same command to go on from input row "
                                   f"{self.next_row}") from None
        m = self.manifest
        m["shards"].append({"file": name, "first_row": first_row, "end_row": end_row, "rows": table.num_rows,
                            "skipped_ids": skipped_ids, "tokens": tokens})
        m["rows"] += table.num_rows
        m["rows_read"] = end_row
        m["tokens"] += tokens
        m["seconds"] = round(m["seconds"] + seconds, 3)
        m["skipped_ids"] = m["skipped_ids"] + skipped_ids
        m.update(extra or {})
        write_json_atomic(self.path, m)

    def finish(self, dimension: int, dtype: str) -> None:
        self.manifest.update(complete=True, dimension=dimension, dtype=dtype, finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        write_json_atomic(self.path, self.manifest)
        try:
            record_output(self.folder, KIND)
        except OSError as exc:
            raise Decoder2VecError(write_error(self.folder, exc)) from None


def check_resumable(folder: str | os.PathLike, settings: dict) -> None:
    """Before any model load: refuse to resume an output recorded with other values of `settings`
    (only the keys given are compared; ShardFolder compares them all once the model is loaded)."""
    path = manifest_path(folder)
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no run to resume, or ShardFolder names the unreadable manifest
    differing = settings_differ({k: v for k, v in recorded.items() if k in settings}, settings)
    if differing:
        raise Decoder2VecError(other_settings(folder, differing))


def other_settings(folder, differing: list[str]) -> str:
    """The refusal of a resume; a changed model fingerprint says what it means."""
    hint = ("; the model's files are not the ones this output was encoded with (a model replaced at the "
            "same path?)" if any(d.startswith("model_fingerprint:") for d in differing) else "")
    return (f"{folder} holds a run with other settings ({'; '.join(differing)}){hint}; run the same command "
            "to resume it, or choose a new output folder")


def settings_differ(recorded: dict, current: dict) -> list[str]:
    """'key: recorded -> current' for every setting that would change written rows."""
    keys = (set(recorded) | set(current)) - set(RESUMABLE_CHANGES)
    return [f"{key}: {recorded.get(key)!r} -> {current.get(key)!r}" for key in sorted(keys)
            if recorded.get(key) != current.get(key)]


def read_shards(folder: str | os.PathLike) -> pa.Table:
    """Every complete shard of a folder as one table, in row order (for tests and small outputs)."""
    folder = Path(folder)
    manifest = json.loads(manifest_path(folder).read_text(encoding="utf-8"))
    tables = [pq.read_table(folder / shard["file"]) for shard in manifest["shards"]]
    return pa.concat_tables(tables) if tables else pa.table({"id": [], "embedding": []})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
