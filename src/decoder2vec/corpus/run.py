"""Encode a corpus with an Encoder, streaming: read a bounded chunk, encode it, write it, repeat.

Output is a folder of Parquet shards plus a manifest (resumable: the same call after a kill goes
on after the last complete shard), or, for small inputs, one .npy or .parquet file written at the
end. Empty and null texts are decided here, before the Encoder sees a chunk, so every skipped row is
counted and named by its id (`on_empty="skip"`) or stops the run naming its file and line
(`on_empty="error"`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..encode_options import EncodeOptions, takes_encode_options
from ..errors import Decoder2VecError
from ..model.precision import CALIBRATED, calibration_ranges, empty, quantize_embeddings
from .fingerprint import fingerprint_of_encoder
from .long_texts import fit_texts, text_limit
from .output_files import record_output_file
from .reading import Chunk, check_inputs, is_empty, read_chunks, resolve_inputs, scan_inputs
from .shards import ShardFolder, check_output_path, check_resumable, ids_file, read_shards, shard_table, write_atomic



@dataclass
class Summary:
    rows: int = 0  # vectors written
    rows_read: int = 0
    skipped_ids: list = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    output: str = ""
    dimension: int = 0
    dtype: str = "float32"

    @classmethod
    def of(cls, folder: ShardFolder) -> "Summary":
        """What a shard folder's manifest says was done (over every run that resumed it)."""
        m = folder.manifest
        return cls(rows=m["rows"], rows_read=m["rows_read"], skipped_ids=m["skipped_ids"], tokens=m["tokens"],
                   seconds=m["seconds"], output=str(folder.folder), dimension=m.get("dimension", 0),
                   dtype=m.get("dtype", "float32"))

    def line(self) -> str:
        rate = self.tokens / self.seconds if self.seconds else 0.0
        skipped = f" ({len(self.skipped_ids)} empty skipped)" if self.skipped_ids else ""
        return (f"encoded {self.rows} rows{skipped}, {self.tokens} tokens in {self.seconds:.1f} s: "
                f"{rate:,.0f} tokens/s")


# The encode options a shard folder's manifest records. on_empty and batch_size change no written
# row (shards.RESUMABLE_CHANGES); nor do max_batch_tokens and unpadded, which older manifests lack.
RECORDED_OPTIONS = ("instruction", "normalize_embeddings", "truncate_dim", "precision", "on_empty", "batch_size")


def corpus_options(options: EncodeOptions | None = None, **keywords) -> EncodeOptions:
    """The EncodeOptions of a corpus run (both engines), refusing those a corpus cannot follow: its
    rows are float vectors written to files, and one instruction goes before every row.
    show_progress_bar is the run's bar over rows; on_empty is decided for the rows (`split_empty`)."""
    options = EncodeOptions.of(options, **keywords)
    if not (options.instruction is None or isinstance(options.instruction, str)):
        raise Decoder2VecError(f"a corpus run takes one instruction string for every row, got "
                               f"{type(options.instruction).__name__}")
    if options.calibration_embeddings is not None:
        raise Decoder2VecError("calibration_embeddings does not apply to a corpus run: int8/uint8 ranges come from "
                               "the Encoder's calibrate() or the first shard")
    for name, value in (("output_value", "sentence_embedding"), ("convert_to_tensor", False)):
        if getattr(options, name) != value:
            raise Decoder2VecError(f"{name}={getattr(options, name)!r} does not apply to a corpus run, which writes "
                                   f"one float vector per row to files ({name}={value!r})")
    return options


def recorded_options(options: EncodeOptions) -> dict:
    return {name: getattr(options, name) for name in RECORDED_OPTIONS}


@takes_encode_options
def encode_corpus(
    encoder,
    inputs: str | Sequence[str],
    output: str | os.PathLike,
    options: EncodeOptions | None = None,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    carry: Sequence[str] = (),
    shard_rows: int = 10_000,
    overwrite: bool = False,
    settings: dict | None = None,
    **keywords,
) -> Summary:
    """Encode every row of `inputs` (paths or globs of .txt/.jsonl/.csv/.parquet) into `output`:
    a folder of Parquet shards with a manifest (resumable), or one .npy/.parquet file.
    options: an EncodeOptions and/or its fields as keywords (`corpus_options` says which apply);
    on_empty="skip" leaves empty and null rows out and lists their ids.

    Every row is read once first (`scan_inputs`): a bad row or a repeated id is refused before
    anything is encoded. overwrite: replace an existing .npy/.parquet output that decoder2vec
    wrote (a file it did not write is never replaced).
    settings: extra entries recorded in the manifest and compared on resume (the CLI passes the
    model name and load options; "model" also names what the model fingerprint hashes)."""
    options = corpus_options(options, **keywords)
    if shard_rows < 1:
        raise Decoder2VecError(f"shard_rows must be >= 1, got {shard_rows}")
    files = resolve_inputs(inputs)
    carry = list(carry)
    check_inputs(files, text_column=text_column, id_column=id_column, carry=carry)
    path, kind = check_output_path(output, overwrite)
    if kind == "shards":
        recorded = {
            **corpus_settings(encoder.config, files, text_column=text_column, id_column=id_column, carry=carry,
                              shard_rows=shard_rows),
            "backend": encoder.backend.name,
            **(settings or {}), **recorded_options(options),
            "model_fingerprint": fingerprint_of_encoder(encoder, (settings or {}).get("model")),
        }
        check_resumable(path, recorded)  # before the read of every row
    max_chars = text_limit(encoder.tokenizer, encoder.max_length)
    offsets = scan_inputs(files, text_column=text_column, id_column=id_column, carry=carry, max_chars=max_chars,
                          on_empty=options.on_empty, chunk_rows=shard_rows)
    job = dict(text_column=text_column, id_column=id_column, carry=carry, chunk_rows=shard_rows, offsets=offsets,
               max_chars=max_chars)
    show = options.show_progress_bar
    if show is None:
        show = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    if kind == "shards":
        return _encode_to_shards(encoder, files, ShardFolder(path, recorded), job, options, show)
    return _encode_to_file(encoder, files, path, kind, job, options, show, id_column is not None)


def corpus_settings(config, files, **kwargs) -> dict:
    """What decides the rows of an output: the Encoder's config (as loaded, with overrides), the
    inputs (and their sizes, so a changed file is not resumed into), the columns and the encode
    options. The local and the Ray engine record the same keys, so either may resume the other.
    config=None leaves the Encoder's keys out (what is known before a model is loaded)."""
    model = {} if config is None else {
        "base_model": config.base_model, "pooling": config.pooling, "bidirectional": bool(config.bidirectional),
        "max_length": config.max_length, "instruction_template": config.instruction_template,
        "pool_span": config.pool_span, "chat_format": config.chat_format,
    }
    return {**model, "inputs": [{"path": str(Path(f).resolve()), "bytes": Path(f).stat().st_size} for f in files],
            **kwargs}


def shard_ends(offsets: Sequence[int], shard_rows: int, start_row: int = 0) -> list[int]:
    """The end row of every shard after `start_row`: shards hold `shard_rows` rows counted from
    each file's start and never span files (what `read_chunks` yields)."""
    ends = []
    for first, end in zip(offsets, offsets[1:]):
        ends.extend(row for row in range(first + shard_rows, end, shard_rows))
        if end > first:
            ends.append(end)
    return [end for end in ends if end > start_row]


def split_empty(chunk: Chunk, on_empty: str) -> tuple[list[int], list]:
    """Row positions to encode and the ids skipped; on_empty="error" stops at the first empty row."""
    keep, skipped = [], []
    for i, text in enumerate(chunk.texts):
        if not is_empty(text):
            keep.append(i)
        elif on_empty == "error":
            what = "null" if text is None else "empty"
            raise Decoder2VecError(f"{chunk.location(i)}: {what} text (id {chunk.ids[i]!r}); pass --on-empty skip "
                                   "(on_empty='skip') to skip empty texts, counted and listed in the output")
        else:
            skipped.append(chunk.ids[i])
    return keep, skipped


def encode_chunk(encoder, chunk: Chunk, keep: list[int], options: EncodeOptions,
                 max_chars: int | None = None) -> tuple[np.ndarray, int]:
    """float32 vectors of the kept rows, and the tokens the model ran on (instruction included).
    max_chars: the reader kept that many characters of each text (long_texts)."""
    texts = fit_texts(encoder.tokenizer, encoder.max_length, [chunk.texts[i] for i in keep],
                      read_limit=max_chars, where=lambda i: chunk.location(keep[i]))
    if not texts:
        return np.zeros((0, options.truncate_dim or encoder.dimension), np.float32), 0
    vectors = encoder.encode(texts, float_options(options))
    ids, _, _ = encoder.tokenize(texts, [options.instruction] * len(texts))
    return vectors, sum(map(len, ids))


def float_options(options: EncodeOptions) -> EncodeOptions:
    """The options of the Encoder calls inside a corpus run: float32 vectors (quantised over the whole
    output with one range, `Quantizer`), no bar of their own, and the empty rows already taken out."""
    return options.replace(precision="float32", show_progress_bar=False, on_empty="error")


class Quantizer:
    """float32 -> the output precision, with one int8/uint8 range for the whole output: the
    Encoder's calibrated ranges when it has them (encoder.calibrate), else the first shard's
    (recorded in the manifest and reused on resume), so a vector never depends on its shard."""

    def __init__(self, encoder, precision: str, normalize_embeddings: bool, dim: int, ranges=None):
        self.precision, self.ranges = precision, None if ranges is None else np.asarray(ranges, np.float32)
        saved = getattr(encoder, "precision_ranges", None)
        if precision in CALIBRATED and self.ranges is None and saved is not None:
            if saved["normalize_embeddings"] != normalize_embeddings:
                raise Decoder2VecError(
                    f"the Encoder's calibrated ranges are for normalize_embeddings={saved['normalize_embeddings']}; "
                    f"this run has normalize_embeddings={normalize_embeddings}")
            self.ranges = np.asarray(saved["ranges"], np.float32)[:, :dim]
        self.new_ranges = False

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        if self.precision in CALIBRATED and self.ranges is None:
            if len(vectors) < 2:
                raise Decoder2VecError(
                    f"precision={self.precision!r} calibrates on the first shard, which has {len(vectors)} text(s); "
                    "raise --shard-rows or calibrate the Encoder first (Encoder.calibrate)")
            self.ranges, self.new_ranges = calibration_ranges(vectors), True
        return quantize_embeddings(vectors, self.precision, self.ranges)


def _progress(total: int, start: int, show: bool):
    return tqdm(total=total, initial=start, unit="rows", desc="encode", disable=not show, smoothing=0.1,
                dynamic_ncols=True)


def _encode_to_shards(encoder, files, folder: ShardFolder, job, options: EncodeOptions, show) -> Summary:
    total = job["offsets"][-1]
    dtype, precision, on_empty = None, options.precision, options.on_empty
    if not folder.complete:
        quantizer = Quantizer(encoder, precision, options.normalize_embeddings,
                              options.truncate_dim or encoder.dimension, folder.manifest.get("calibration"))
        with _progress(total, folder.next_row, show) as bar:
            for chunk in read_chunks(files, start_row=folder.next_row, **job):
                started = time.perf_counter()
                keep, skipped = split_empty(chunk, on_empty)
                vectors, tokens = encode_chunk(encoder, chunk, keep, options, job["max_chars"])
                out = quantizer(vectors) if len(vectors) else empty(vectors.shape[1], precision)
                extra = {"calibration": quantizer.ranges.tolist()} if quantizer.new_ranges else {}
                quantizer.new_ranges = False
                table = shard_table([chunk.ids[i] for i in keep], out,
                                    {k: [v[i] for i in keep] for k, v in chunk.columns.items()}, folder.schema)
                folder.write(table, first_row=chunk.first_row, end_row=chunk.first_row + len(chunk),
                             skipped_ids=skipped, tokens=tokens, seconds=time.perf_counter() - started, extra=extra)
                bar.update(len(chunk))
                dtype = out.dtype
        dimension = folder.schema.field("embedding").type.list_size if folder.schema else encoder.dimension
        folder.finish(dimension, str(dtype or np.dtype(np.float32)))
    return Summary.of(folder)


def _encode_to_file(encoder, files, path: Path, kind, job, options: EncodeOptions, show, write_ids: bool) -> Summary:
    """One .npy or .parquet file: vectors are gathered in memory (small inputs) and quantised
    together, exactly as one `encode` call would."""
    summary = Summary(output=str(path))
    precision, on_empty = options.precision, options.on_empty
    parts, ids, columns = [], [], {name: [] for name in job["carry"]}
    started = time.perf_counter()
    with _progress(job["offsets"][-1], 0, show) as bar:
        for chunk in read_chunks(files, **job):
            keep, skipped = split_empty(chunk, on_empty)
            vectors, tokens = encode_chunk(encoder, chunk, keep, options, job["max_chars"])
            parts.append(vectors)
            ids.extend(chunk.ids[i] for i in keep)
            for name, values in chunk.columns.items():
                columns[name].extend(values[i] for i in keep)
            summary.skipped_ids.extend(skipped)
            summary.tokens += tokens
            summary.rows_read += len(chunk)
            bar.update(len(chunk))
    dim = options.truncate_dim or encoder.dimension
    floats = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
    vectors = Quantizer(encoder, precision, options.normalize_embeddings, dim)(floats) if len(floats) else \
        empty(dim, precision)
    companions = []
    if kind == "npy":
        ids_path = ids_file(path)
        write_atomic(path, lambda tmp: _save_npy(tmp, vectors))
        if write_ids or on_empty == "skip":
            # Row i of the .npy is the input row with ids[i]: the kept rows' ids, beside it.
            try:
                write_atomic(ids_path, lambda tmp: tmp.write_text(json.dumps(ids) + "\n", encoding="utf-8"))
            except Decoder2VecError:
                path.unlink()  # vectors without their ids would be read in the wrong order
                raise
            companions.append(ids_path)
        else:
            ids_path.unlink(missing_ok=True)  # an earlier run's (check_output_path: ours, and overwrite given)
    else:
        table = shard_table(ids, vectors, columns)
        write_atomic(path, lambda tmp: pq.write_table(table, tmp))
    try:
        record_output_file(path, companions)
    except OSError as exc:
        raise Decoder2VecError(f"wrote {path} but not its record beside it ({exc.strerror or exc}); "
                               "a later --overwrite will refuse to replace it") from None
    summary.rows, summary.dimension, summary.dtype = len(vectors), vectors.shape[1], str(vectors.dtype)
    summary.seconds = time.perf_counter() - started
    return summary


def _save_npy(path: Path, vectors: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would add ".npy" to the temporary name
        np.save(f, vectors)


def read_output(output: str | os.PathLike) -> pa.Table:
    """An output (shard folder or .parquet file) as one table of `id`, `embedding`, carried columns."""
    output = Path(output)
    return read_shards(output) if output.is_dir() else pq.read_table(output)
