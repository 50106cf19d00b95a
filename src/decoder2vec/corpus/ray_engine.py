"""Encode a corpus on Ray Data: a pool of Encoder actors (one model load each, one GPU each where
the cluster has GPUs) maps a Ray Dataset to vectors.

- `encode_dataset(ds, model, ...)` is the building block: any Ray Dataset with a text column in,
  the same Dataset plus an `embedding` column out (fixed-size list of float32, or the precision's
  dtype). Write it where you like (`.write_parquet(...)`) or iterate it.
- `encode_files(...)` is `decoder2vec encode --engine ray`: the driver reads every row once first
  (`scan_inputs`: a bad row or a repeated id is one line naming its file and line, before Ray
  starts), then files are read by Ray tasks with the local reader, encoded by the actor pool, and
  written by the driver as the local engine's shards and manifest, in row order, so a killed job
  resumes like a local one (and either engine may resume the other's output).

Ray retries the tasks of an actor that dies (Ray Data restarts pool actors and retries their tasks
by default), so a lost worker costs its batch, not the job. Ray is the optional `ray` extra:
`pip install 'decoder2vec[ray]'`; only this module imports it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from tqdm.auto import tqdm

from . import (ShardFolder, Summary, check_inputs, check_output_path, check_resumable, corpus_options, corpus_settings,
                     fit_texts, float_options, is_empty, model_fingerprint, read_chunks, recorded_options,
                     resolve_inputs, row_location, scan_inputs, shard_ends, text_limit)
from ..encode_options import EncodeOptions, takes_encode_options
from ..encoder import Encoder
from ..errors import Decoder2VecError
from ..folder.config import EncoderConfig, read_config
from ..model.loading import load_tokenizer, resolve_model
from ..model.precision import CALIBRATED, empty, quantize_embeddings

ROW = "_row"  # the row number over all inputs: orders rows into shards and names a bad row's line
TOKENS = "_tokens"


class EncodeBatches:
    """A Ray Data actor: one Encoder, loaded once in __init__, encodes the text column of each batch."""

    def __init__(self, model: str, load: dict, text_column: str, options: EncodeOptions, ranges,
                 count_tokens: bool, read_limit: int | None = None):
        self.encoder = Encoder.from_pretrained(model, **load)
        self.text_column, self.options = text_column, options
        self.ranges = None if ranges is None else np.asarray(ranges, np.float32)
        self.count_tokens, self.read_limit = count_tokens, read_limit

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.text_column not in batch.column_names:
            raise Decoder2VecError(f"the dataset has no column {self.text_column!r} (columns: "
                                   f"{', '.join(batch.column_names)})")
        # A long text goes in as a prefix with the same first max_length tokens (corpus.long_texts).
        ids = batch.column("id") if "id" in batch.column_names else None
        texts = fit_texts(self.encoder.tokenizer, self.encoder.max_length, batch.column(self.text_column).to_pylist(),
                          read_limit=self.read_limit,
                          where=lambda i: f"id {ids[i].as_py()!r}" if ids is not None else f"batch row {i}")
        keep = [i for i, text in enumerate(texts) if not is_empty(text)]
        if self.options.on_empty == "error" and len(keep) < len(texts):
            bad = next(i for i, text in enumerate(texts) if is_empty(text))
            where = f"id {batch.column('id')[bad].as_py()!r}" if "id" in batch.column_names else f"batch row {bad}"
            raise Decoder2VecError(f"empty text in column {self.text_column!r} ({where}); use on_empty='skip'")
        vectors = self._encode([texts[i] for i in keep])
        full = np.zeros((len(texts), vectors.shape[1]), vectors.dtype)
        full[keep] = vectors
        skipped = np.ones(len(texts), bool)
        skipped[keep] = False
        # A skipped row stays, with a null embedding: every input row is accounted for.
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(full.reshape(-1)), full.shape[1],
                                                      mask=pa.array(skipped))
        out = batch.append_column("embedding", embedding)
        if self.count_tokens:
            lengths = np.zeros(len(texts), np.int64)
            if keep:
                ids, _, _ = self.encoder.tokenize([texts[i] for i in keep], [self.options.instruction] * len(keep))
                lengths[keep] = [len(x) for x in ids]
            out = out.append_column(TOKENS, pa.array(lengths))
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        precision = self.options.precision
        if not texts:
            return empty(self.options.truncate_dim or self.encoder.dimension, precision)
        floats = float_options(self.options)
        if precision in CALIBRATED and self.ranges is None:
            # The Encoder's own calibrated ranges (encoder.calibrate), or its one-line error.
            return self.encoder.encode(texts, floats.replace(precision=precision))
        return quantize_embeddings(self.encoder.encode(texts, floats), precision, self.ranges)


@takes_encode_options
def encode_dataset(
    ds: ray.data.Dataset,
    model: str,
    options: EncodeOptions | None = None,
    *,
    text_column: str = "text",
    ranges=None,
    num_workers: int = 1,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    load: dict | None = None,
    count_tokens: bool = False,
    read_limit: int | None = None,
    **keywords,
) -> ray.data.Dataset:
    """`ds` plus an `embedding` column, computed by `num_workers` Encoder actors.
    options: an EncodeOptions and/or its fields as keywords (`corpus.corpus_options` says which apply).

    model: a path, hub id or packaged name every worker can load (`Encoder.from_pretrained(model,
    **load)`, once per actor). batch_size: rows per actor call (and per encode call).
    num_gpus: per actor; default 1 when the cluster has GPUs, else 0. num_cpus: per actor; default
    on CPU-only clusters an equal share of all CPUs but one (at most 1 each). int8/uint8 need `ranges`
    ((2, dim) [min; max]) or a calibrated Encoder, so every worker quantises alike.
    on_empty: "error" fails the job on an empty or null text; "skip" keeps the row with a null
    embedding (select them with `ds.filter(expr="embedding is null")`).
    read_limit: the texts were read keeping only that many characters (`corpus.text_limit`);
    None: they are whole."""
    options = corpus_options(options, **keywords)
    if not isinstance(num_workers, int) or num_workers < 1:
        raise Decoder2VecError(f"num_workers must be an integer >= 1, got {num_workers!r}")
    if not ray.is_initialized():
        ray.init()
    resources = ray.cluster_resources()
    if num_gpus is None:
        num_gpus = 1 if resources.get("GPU", 0) >= 1 else 0
    if num_cpus is None and not num_gpus:
        # Actors that take every CPU starve the read tasks that feed them (the job hangs): leave one.
        num_cpus = min(1.0, max(0.1, (resources.get("CPU", 1) - 1) / num_workers))
    remote = {"num_cpus": num_cpus} if num_cpus is not None else {}
    return ds.map_batches(
        EncodeBatches,
        fn_constructor_kwargs=dict(model=str(model), load=load or {}, text_column=text_column, options=options,
                                   ranges=None if ranges is None else np.asarray(ranges).tolist(),
                                   count_tokens=count_tokens, read_limit=read_limit),
        batch_size=options.batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_gpus=num_gpus, **remote,
    )


def read_files(files: Sequence[Path], offsets: Sequence[int], *, text_column: str = "text", id_column=None,
               carry: Sequence[str] = (), chunk_rows: int = 4096, start_row: int = 0,
               max_chars: int | None = None) -> ray.data.Dataset:
    """The rows of `files` as a Ray Dataset (`_row`, `id`, the text column, carried columns), one
    read task per file, with the local reader: the same ids, empties and file:line errors.
    max_chars: the characters of each text kept (`corpus.text_limit`)."""
    items = [{"path": str(path), "first_row": offsets[i], "end_row": offsets[i + 1]}
             for i, path in enumerate(files) if offsets[i + 1] > start_row]
    kwargs = dict(text_column=text_column, id_column=id_column, carry=list(carry), chunk_rows=chunk_rows,
                  start_row=start_row, max_chars=max_chars)
    return ray.data.from_items(items, override_num_blocks=max(len(items), 1)).map_batches(
        _read_rows, batch_size=1, batch_format="pyarrow", fn_kwargs=kwargs)


def _read_rows(batch: pa.Table, *, text_column, id_column, carry, chunk_rows, start_row,
               max_chars) -> Iterator[pa.Table]:
    for item in batch.to_pylist():
        chunks = read_chunks([Path(item["path"])], text_column=text_column, id_column=id_column, carry=carry,
                             chunk_rows=chunk_rows, start_row=start_row,
                             offsets=[item["first_row"], item["end_row"]], max_chars=max_chars)
        for chunk in chunks:
            rows = pa.array(range(chunk.first_row, chunk.first_row + len(chunk)), pa.int64())
            yield pa.table({ROW: rows, "id": chunk.ids, text_column: pa.array(chunk.texts, pa.string()),
                            **chunk.columns})


def effective_config(model: str, load: dict) -> EncoderConfig:
    """The EncoderConfig the workers will load (the folder's, with the load overrides), read on the
    driver without loading weights: it goes into the manifest's settings like the local engine's."""
    source = resolve_model(model)
    config = read_config(source) if Path(source).is_dir() else None
    if config is None:
        config = EncoderConfig(base_model=str(model))
    for key in ("pooling", "bidirectional", "max_length", "instruction_template", "pool_span", "chat_format"):
        if load.get(key) is not None:
            setattr(config, key, load[key])
    return config


@takes_encode_options
def encode_files(
    model: str,
    inputs,
    output,
    options: EncodeOptions | None = None,
    *,
    load: dict | None = None,
    num_workers: int = 1,
    address: str | None = None,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    settings: dict | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    carry: Sequence[str] = (),
    shard_rows: int = 10_000,
    **keywords,
) -> Summary:
    """`decoder2vec encode --engine ray`: files in, the local engine's shard folder out (resumable).
    options: an EncodeOptions and/or its fields as keywords, as `encode_corpus`'s."""
    options = corpus_options(options, **keywords)
    files = resolve_inputs(inputs)
    check_inputs(files, text_column=text_column, id_column=id_column, carry=carry)
    path, kind = check_output_path(output)
    if kind != "shards":
        raise Decoder2VecError(f"the Ray engine writes Parquet shards into a folder; got {str(output)!r}")
    load = {k: v for k, v in (load or {}).items() if v is not None}
    carry = list(carry)
    config = effective_config(model, load)
    recorded = {
        **corpus_settings(config, files, text_column=text_column, id_column=id_column, carry=carry,
                          shard_rows=shard_rows),
        "backend": load.get("backend", "torch"),
        **(settings or {}), **recorded_options(options),
        "model_fingerprint": model_fingerprint((settings or {}).get("model") or model),
    }
    check_resumable(path, recorded)
    # Every row is read here first, so a bad row is one line before Ray starts (a Ray task's error
    # would come wrapped in three of Ray's tracebacks), and the workers read only good rows.
    max_chars = text_limit(load_tokenizer(model, trust_remote_code=bool(load.get("trust_remote_code"))),
                           config.max_length)
    offsets = scan_inputs(files, text_column=text_column, id_column=id_column, carry=carry, max_chars=max_chars,
                          on_empty=options.on_empty, chunk_rows=shard_rows)
    folder = ShardFolder(path, recorded)
    if folder.complete:
        return Summary.of(folder)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    # Output in input order, so the driver cuts the same shards as the local engine.
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    try:
        rows = read_files(files, offsets, text_column=text_column, id_column=id_column, carry=carry,
                          chunk_rows=min(shard_rows, 4096), start_row=folder.next_row, max_chars=max_chars)
        # Ray merges a read task's output into large blocks, and an actor takes whole blocks: small
        # blocks (streamed, not shuffled) let every actor of the pool get work.
        rows = rows.repartition(target_num_rows_per_block=options.batch_size * 8)
        # The workers keep empty rows (null embedding); _write_shard applies on_empty naming file and line.
        encoded = encode_dataset(rows, model, options.replace(on_empty="skip"), text_column=text_column,
                                 num_workers=num_workers, num_gpus=num_gpus, num_cpus=num_cpus, load=load,
                                 count_tokens=True, read_limit=max_chars)
        _write_in_order(encoded, folder, files, offsets, shard_rows, carry, options.on_empty,
                        bool(options.show_progress_bar))
    except Exception as exc:
        user = _user_error(exc)
        if user is None:
            raise
        raise Decoder2VecError(user.args[0] if user.args else str(user)) from None
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        if started_ray:
            ray.shutdown()
    return Summary.of(folder)


def _write_in_order(encoded, folder: ShardFolder, files, offsets, shard_rows, carry, on_empty, show) -> None:
    ends = iter(shard_ends(offsets, shard_rows, folder.next_row))
    end = next(ends, None)
    pending, have, started, dtype = [], 0, time.perf_counter(), None
    with tqdm(total=offsets[-1], initial=folder.next_row, unit="rows", desc="encode", disable=not show) as bar:
        for batch in encoded.iter_batches(batch_format="pyarrow", batch_size=None):
            pending.append(batch)
            have += batch.num_rows
            bar.update(batch.num_rows)
            while end is not None and folder.next_row + have >= end:
                table = pa.concat_tables(pending)
                size = end - folder.next_row
                dtype = _write_shard(folder, table.slice(0, size), files, offsets, carry, on_empty,
                                     time.perf_counter() - started)
                started = time.perf_counter()
                pending, have = [table.slice(size)], table.num_rows - size
                end = next(ends, None)
    if end is not None or have:
        raise RuntimeError(f"the Ray job ended at row {folder.next_row + have}, expected row {offsets[-1]}")
    width = folder.schema.field("embedding").type.list_size if folder.schema else 0
    folder.finish(width, str(dtype or "float32"))


def _write_shard(folder, table: pa.Table, files, offsets, carry, on_empty, seconds):
    rows = table.column(ROW).to_numpy()
    first, end = folder.next_row, folder.next_row + table.num_rows
    if rows[0] != first or rows[-1] != end - 1 or (len(rows) > 1 and (np.diff(rows) != 1).any()):
        raise RuntimeError(f"rows out of order: expected {first}..{end - 1}, got {rows[0]}..{rows[-1]}")
    valid = pc.is_valid(table.column("embedding"))
    skipped = table.filter(pc.invert(valid))
    if on_empty == "error" and skipped.num_rows:
        row = skipped.column(ROW)[0].as_py()
        raise Decoder2VecError(
            f"{row_location(files, offsets, row)}: empty text (id {skipped.column('id')[0].as_py()!r}); pass "
            "--on-empty skip (on_empty='skip') to skip empty texts, counted and listed in the output")
    out = table.filter(valid).select(["id", "embedding", *carry])
    folder.write(out, first_row=first, end_row=end, skipped_ids=skipped.column("id").to_pylist(),
                 tokens=int(pc.sum(table.column(TOKENS)).as_py() or 0), seconds=seconds)
    return str(np.dtype(out.schema.field("embedding").type.value_type.to_pandas_dtype()))


def _user_error(exc: BaseException) -> Decoder2VecError | None:
    """The Decoder2VecError a Ray task raised, found through Ray's wrappers (cause chains). Ray
    re-raises it as a `RayTaskError(Decoder2VecError)` whose text is Ray's traceback and retry
    advice; the error itself is its `cause`."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Decoder2VecError) and not isinstance(getattr(exc, "cause", None), BaseException):
            return exc
        seen.add(id(exc))
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None
