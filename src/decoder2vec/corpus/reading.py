"""Read a corpus as a stream of bounded chunks: .txt, .jsonl, .csv and .parquet files, several files
or a glob. Memory is bounded by the chunk size, never by the corpus.

Every row keeps an id (a column of the input, or its row number counted over all inputs in order)
and a location (`file:line` or `file row N`) so any error or skipped row names where it came from.
.txt and .jsonl are read line by line in Python because their unit *is* the line: a line number is
what an error must name, and pyarrow's JSON reader infers one schema per block and reports errors
by block row. .csv is streamed by pyarrow (`open_csv`, bounded blocks) and .parquet by row batches.

A line ends at \n, \r\n or a lone \r (classic Mac); a UTF-8 byte-order mark at the start of a
file is not text (what `utf-8-sig` readers do; pyarrow's CSV reader does the same). A line is read
in blocks and only its first `max_chars` characters are kept (the rest is still checked for
UTF-8), so one huge line costs a block, not its size: an Encoder reads at most max_length tokens.
"""

from __future__ import annotations

import bisect
import codecs
import glob
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ..errors import Decoder2VecError

FORMATS = (".txt", ".jsonl", ".csv", ".parquet")
CSV_BLOCK_BYTES = 1 << 20
READ_BYTES = 1 << 18  # .txt/.jsonl are read in blocks of this size, whatever their line lengths
BOM = b"\xef\xbb\xbf"
LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass
class Chunk:
    """Consecutive rows of one input file (a chunk never spans files)."""

    path: Path
    first_row: int  # row number over all inputs of the first row here
    first_local: int  # 0-based row of the first row within `path`
    ids: list
    texts: list  # str or None (a null cell)
    columns: dict = field(default_factory=dict)  # carried columns, name -> list of values

    def __len__(self) -> int:
        return len(self.texts)

    def location(self, i: int) -> str:
        """Where row i of this chunk is, in the words of the file's own format."""
        return location(self.path, self.first_local + i)


def location(path: Path, local: int) -> str:
    """`file:line` (.txt, .jsonl) or `file row N` (.csv, .parquet) of the file's 0-based row `local`."""
    if Path(path).suffix.lower() in (".txt", ".jsonl"):
        return f"{path}:{local + 1}"
    return f"{path} row {local + 1}"


def row_location(files: Sequence[Path], offsets: Sequence[int], row: int) -> str:
    """The location of row `row` counted over all inputs (`offsets` from `scan_inputs`)."""
    index = bisect.bisect_right(offsets, row) - 1
    return location(files[index], row - offsets[index])


def is_empty(text) -> bool:
    """Null cells and whitespace-only texts have nothing to embed (the Encoder's rule too)."""
    return text is None or not text.strip()


def resolve_inputs(inputs: str | Sequence[str]) -> list[Path]:
    """Files named by paths or globs, each glob sorted, in the order given; duplicates are an error
    (a row must have one id)."""
    specs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not specs:
        raise Decoder2VecError("no input given")
    files: list[Path] = []
    for spec in map(str, specs):
        matches = sorted(glob.glob(spec, recursive=True)) if glob.has_magic(spec) else [spec]
        if not matches:
            raise Decoder2VecError(f"no input file matches {spec!r}")
        for match in matches:
            path = Path(match)
            if not path.exists():
                raise Decoder2VecError(f"input file not found: {match}")
            if path.is_dir():
                raise Decoder2VecError(f"input {match} is a directory; name its files or a quoted glob, "
                                       f"e.g. '{match.rstrip('/')}/*.jsonl'")
            if not path.is_file():  # a FIFO, socket or device: it cannot be read twice (rows are counted first)
                raise Decoder2VecError(f"input {match} is not a regular file; save the texts to a file first")
            if path.suffix.lower() not in FORMATS:
                raise Decoder2VecError(
                    f"unsupported input type {path.suffix.lower()!r} for {match}; use {', '.join(FORMATS)}")
            files.append(path)
    seen = set()
    for path in files:
        if path.resolve() in seen:
            raise Decoder2VecError(f"input file {path} is given twice")
        seen.add(path.resolve())
    return files


def check_inputs(files: Sequence[Path], *, text_column: str = "text", id_column: str | None = None,
                 carry: Sequence[str] = ()) -> None:
    """Each file has the columns asked for, judged from its header (.csv), schema (.parquet) or
    first line (.jsonl), so a wrong name is reported before a model is loaded."""
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".txt":
            _check_txt_columns(path, text_column, id_column, carry)
            continue
        if suffix == ".jsonl":
            first = next(_jsonl_rows(path, text_column), None)
            names = list(first) if first is not None else None
        else:
            names = _arrow_names(path)
        if names is not None:
            _check_names(path, names, text_column, id_column, carry)


def _check_txt_columns(path, text_column, id_column, carry) -> None:
    if text_column != "text" or id_column or any(c != "text" for c in carry):
        raise Decoder2VecError(f"{path}: a .txt file has one column, 'text' (one text per line); --text-column, "
                               "--id-column and --carry other than 'text' need .jsonl, .csv or .parquet")


def _check_names(path, names, text_column, id_column, carry) -> None:
    for name in (text_column, id_column, *carry):
        if name is not None and name not in names:
            what = "column" if name == text_column else "id column" if name == id_column else "column to carry"
            hint = "; name it with --text-column" if name == text_column else ""
            raise Decoder2VecError(f"{path} has no {what} {name!r} (columns: {', '.join(names)}){hint}")


def _arrow_names(path: Path) -> list[str]:
    try:
        if path.suffix.lower() == ".parquet":
            return pq.ParquetFile(path).schema_arrow.names
        return pa_csv.open_csv(path, convert_options=pa_csv.ConvertOptions(check_utf8=False)).schema.names
    except (pa.ArrowException, OSError) as exc:
        raise Decoder2VecError(f"{path}: {str(exc).splitlines()[0]}") from None


def count_rows(path: Path) -> int:
    """Rows in one input: Parquet metadata, newlines for .txt/.jsonl, a pyarrow parse for .csv
    (quoted cells may hold newlines). Exact, so it gives the progress total and each file's first
    row number."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if suffix == ".csv":
        try:
            names = pa_csv.open_csv(path, convert_options=pa_csv.ConvertOptions(check_utf8=False)).schema.names
            # Every column as bytes: counting needs no type inference or UTF-8 check to succeed.
            return sum(batch.num_rows for batch in pa_csv.open_csv(
                path, read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                convert_options=pa_csv.ConvertOptions(column_types={n: pa.binary() for n in names})))
        except (pa.ArrowException, OSError) as exc:
            raise Decoder2VecError(f"{path}: {str(exc).splitlines()[0]}") from None
    lines, last = 0, b""
    with open(path, "rb") as f:
        for block in _blocks(f):
            lines += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
            last = block[-1:]
    return lines + (last not in (b"", b"\n", b"\r"))  # a last line without a line end is a row


def scan_inputs(files: Sequence[Path], *, text_column: str = "text", id_column: str | None = None,
                carry: Sequence[str] = (), max_chars: int | None = None, on_empty: str = "skip",
                chunk_rows: int = 10_000) -> list[int]:
    """Read every row once before anything is encoded or Ray is started: a bad row (not UTF-8, not
    JSON, a missing id, an empty text with on_empty="error") or a repeated id is refused now, in
    one line naming its file and line. Returns each file's first row over all inputs, and the
    total last (what `first_rows` returns, counted by the reader itself).

    Repeated ids are found from 8 bytes per row (a 64-bit hash of each id), then confirmed on
    the rows themselves."""
    offsets, hashes = [0], []
    for path in files:
        rows = 0
        for chunk in _read_file(path, text_column, id_column, tuple(carry), chunk_rows, offsets[-1], max_chars):
            if on_empty == "error":
                empty = next((i for i, text in enumerate(chunk.texts) if is_empty(text)), None)
                if empty is not None:
                    what = "null" if chunk.texts[empty] is None else "empty"
                    raise Decoder2VecError(
                        f"{chunk.location(empty)}: {what} text (id {chunk.ids[empty]!r}); pass --on-empty skip "
                        "(on_empty='skip') to skip empty texts, counted and listed in the output")
            if id_column is not None:
                hashes.append(np.fromiter(map(_id_hash, chunk.ids), np.int64, len(chunk)))
            rows += len(chunk)
        offsets.append(offsets[-1] + rows)
    if hashes:
        _refuse_repeated_ids(files, offsets, np.concatenate(hashes), text_column, id_column)
    return offsets


def _id_hash(value) -> int:
    return hash(repr(value))  # repr: 1 and "1" are different ids; lists are hashable this way


def _refuse_repeated_ids(files, offsets, hashes: np.ndarray, text_column: str, id_column: str) -> None:
    order = np.argsort(hashes, kind="stable")  # equal hashes stay in row order
    ordered = hashes[order]
    repeats = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
    for row in sorted(order[repeats].tolist()):
        first = int(order[np.searchsorted(ordered, hashes[row])])
        value, earlier = _id_at(files, offsets, row, text_column, id_column), \
            _id_at(files, offsets, first, text_column, id_column)
        if repr(value) == repr(earlier):  # not merely equal hashes
            raise Decoder2VecError(
                f"{row_location(files, offsets, row)}: id {value!r} repeats the id of "
                f"{row_location(files, offsets, first)}; the values of --id-column ({id_column!r}) must be unique")


def _id_at(files, offsets, row: int, text_column: str, id_column: str):
    chunk = next(read_chunks(files, text_column=text_column, id_column=id_column, start_row=row,
                             offsets=offsets, max_chars=1))
    return chunk.ids[0]


def first_rows(files: Sequence[Path]) -> list[int]:
    """Each file's first row number over all inputs, and the total last: [0, n0, n0+n1, ...]."""
    rows = [0]
    for path in files:
        rows.append(rows[-1] + count_rows(path))
    return rows


def read_chunks(
    files: Sequence[Path],
    *,
    text_column: str = "text",
    id_column: str | None = None,
    carry: Sequence[str] = (),
    chunk_rows: int = 10_000,
    start_row: int = 0,
    offsets: Sequence[int] | None = None,
    max_chars: int | None = None,
) -> Iterator[Chunk]:
    """Chunks of at most `chunk_rows` rows, in input order, starting at row `start_row` (rows
    before it are read and dropped: resuming costs a read, not an encode). `offsets`, when known
    (`scan_inputs` or `first_rows`), lets files that end before `start_row` go unread.
    max_chars: keep only each text's first max_chars characters (`long_texts.text_limit`)."""
    if chunk_rows < 1:
        raise Decoder2VecError(f"chunk rows must be >= 1, got {chunk_rows}")
    row = 0
    for index, path in enumerate(files):
        if offsets is not None:
            row = offsets[index]
            if offsets[index + 1] <= start_row:
                continue
        for chunk in _read_file(path, text_column, id_column, tuple(carry), chunk_rows, row, max_chars):
            end = chunk.first_row + len(chunk)
            if end > start_row:
                yield _tail(chunk, start_row - chunk.first_row) if chunk.first_row < start_row else chunk
            row = end  # the next file's rows follow this one's


def _tail(chunk: Chunk, skip: int) -> Chunk:
    return Chunk(chunk.path, chunk.first_row + skip, chunk.first_local + skip, chunk.ids[skip:],
                 chunk.texts[skip:], {k: v[skip:] for k, v in chunk.columns.items()})


def _read_file(path, text_column, id_column, carry, chunk_rows, first_row, max_chars=None) -> Iterator[Chunk]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        _check_txt_columns(path, text_column, id_column, carry)
        # A carried text column is copied whole, so then the line is kept whole.
        rows = ({"text": text} for text in _decoded_lines(path, None if "text" in carry else max_chars))
        yield from _chunks_of_rows(path, rows, text_column, id_column, carry, chunk_rows, first_row, max_chars)
    elif suffix == ".jsonl":
        yield from _chunks_of_rows(path, _jsonl_rows(path, text_column), text_column, id_column, carry,
                                   chunk_rows, first_row, max_chars)
    else:
        _check_names(path, _arrow_names(path), text_column, id_column, carry)
        yield from _chunks_of_batches(path, _arrow_batches(path, text_column), text_column, id_column, carry,
                                      chunk_rows, first_row, max_chars)


def _blocks(f) -> Iterator[bytes]:
    """A file's bytes in blocks: a UTF-8 BOM at the start dropped, and no block ends inside a
    \r\n pair (a block that ends with \r takes the next byte), so every line end is in one block."""
    first = True
    while block := f.read(READ_BYTES):
        if first:
            block, first = block.removeprefix(BOM), False
        while block.endswith(b"\r") and (more := f.read(1)):
            block += more
        yield block


def _decoded_lines(path: Path, max_chars: int | None = None) -> Iterator[str]:
    # Split on \n, \r\n and \r only (str.splitlines also splits on \x0b, \x1c, \u2028, ... so row
    # i would not be line i). A line is decoded piece by piece as its blocks arrive.
    line = _Line(path, max_chars)
    with open(path, "rb") as f:
        for block in _blocks(f):
            start = 0
            for end in LINE_END.finditer(block):
                line.add(block[start:end.start()])
                yield line.finish()
                start = end.end()
            line.add(block[start:])
    if line.fed:  # the last line has no line end
        yield line.finish()


class _Line:
    """One line being decoded: every byte is checked for UTF-8, the first `max_chars` characters kept."""

    def __init__(self, path: Path, max_chars: int | None):
        self.path, self.max_chars, self.number = path, max_chars, 1
        self._start()

    def _start(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.parts, self.kept, self.fed = [], 0, 0

    def add(self, raw: bytes, final: bool = False) -> None:
        before = self.fed - len(self.decoder.buffer)  # the line's byte where the decoder's input starts
        self.fed += len(raw)
        try:
            text = self.decoder.decode(raw, final)
        except UnicodeDecodeError as exc:
            raise Decoder2VecError(
                f"{self.path}:{self.number}: not UTF-8 (byte {exc.object[exc.start]:#04x} at column "
                f"{before + exc.start + 1}); convert the file, e.g. iconv -f latin1 -t utf-8"
            ) from None
        if self.max_chars is not None:
            text = text[: max(self.max_chars - self.kept, 0)]
        if text:
            self.parts.append(text)
            self.kept += len(text)

    def finish(self) -> str:
        self.add(b"", final=True)
        text = "".join(self.parts)
        self.number += 1
        self._start()
        return text


def _jsonl_rows(path: Path, text_column: str) -> Iterator[dict]:
    for number, line in enumerate(_decoded_lines(path), 1):
        try:
            row = json.loads(line)
        except ValueError as exc:
            reason = "an empty line" if not line.strip() else f"{getattr(exc, 'msg', exc)} at column {getattr(exc, 'colno', '?')}"
            raise Decoder2VecError(f"{path}:{number}: not a JSON object ({reason})") from None
        if not isinstance(row, dict):
            raise Decoder2VecError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        if text_column not in row:
            raise Decoder2VecError(f"{path}:{number} has no column {text_column!r} (columns: {', '.join(row)}); "
                                   "name it with --text-column")
        yield row


def _chunks_of_rows(path, rows, text_column, id_column, carry, chunk_rows, first_row,
                    max_chars=None) -> Iterator[Chunk]:
    chunk = _empty_chunk(path, first_row, 0, carry)
    for local, row in enumerate(rows):
        text = row[text_column]
        if text is not None and not isinstance(text, str):
            raise Decoder2VecError(f"{path}:{local + 1}: {text_column!r} is {type(text).__name__}, not a string: "
                                   f"{text!r:.60}")
        if text is not None and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:  # a JSON "\ud800" escape: a lone surrogate is no text
                raise Decoder2VecError(f"{path}:{local + 1}: {text_column!r} holds a lone surrogate "
                                       f"({text[exc.start]!r} at character {exc.start + 1}); fix the escape") from None
        if id_column is not None and row.get(id_column) is None:
            raise Decoder2VecError(f"{path}:{local + 1} has no id in column {id_column!r}")
        chunk.texts.append(text if text is None or max_chars is None else text[:max_chars])
        chunk.ids.append(row[id_column] if id_column else first_row + local)
        for name in carry:
            chunk.columns[name].append(row.get(name))
        if len(chunk) == chunk_rows:
            yield chunk
            chunk = _empty_chunk(path, first_row + local + 1, local + 1, carry)
    if len(chunk):
        yield chunk


def _empty_chunk(path, first_row, first_local, carry) -> Chunk:
    return Chunk(path, first_row, first_local, [], [], {name: [] for name in carry})


def _arrow_batches(path: Path, text_column: str) -> Iterator[pa.RecordBatch]:
    try:
        if path.suffix.lower() == ".parquet":
            yield from pq.ParquetFile(path).iter_batches(batch_size=65_536)
            return
        # The text column is read as bytes and decoded per row below, so a non-UTF-8 cell is
        # named by its row (pyarrow's own check names only the column).
        reader = pa_csv.open_csv(
            path, read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            convert_options=pa_csv.ConvertOptions(column_types={text_column: pa.binary()}),
        )
        yield from reader
    except (pa.ArrowException, OSError) as exc:
        raise Decoder2VecError(f"{path}: {str(exc).splitlines()[0]}") from None


def _chunks_of_batches(path, batches, text_column, id_column, carry, chunk_rows, first_row,
                       max_chars=None) -> Iterator[Chunk]:
    chunk = _empty_chunk(path, first_row, 0, carry)
    local = 0
    for batch in batches:
        texts = _texts_of(path, batch.column(text_column), text_column, local)
        ids = batch.column(id_column).to_pylist() if id_column else range(first_row + local, first_row + local + len(texts))
        carried = {name: texts if name == text_column else batch.column(name).to_pylist() for name in carry}
        for i, (text, id_) in enumerate(zip(texts, ids)):
            if id_ is None:
                raise Decoder2VecError(f"{path} row {local + i + 1} has no id in column {id_column!r}")
            chunk.texts.append(text if text is None or max_chars is None else text[:max_chars])
            chunk.ids.append(id_)
            for name in carry:
                chunk.columns[name].append(carried[name][i])
            if len(chunk) == chunk_rows:
                yield chunk
                chunk = _empty_chunk(path, first_row + local + i + 1, local + i + 1, carry)
        local += len(texts)
    if len(chunk):
        yield chunk


def _texts_of(path, column: pa.Array, name: str, local: int) -> list:
    kind = column.type
    if pa.types.is_null(kind):
        return [None] * len(column)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.to_pylist()
    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        raise Decoder2VecError(f"{path}: column {name!r} holds {kind}, not text")
    texts = []
    for i, raw in enumerate(column.to_pylist()):
        try:
            texts.append(None if raw is None else raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise Decoder2VecError(f"{path} row {local + i + 1}: column {name!r} is not UTF-8 "
                                   f"(byte {raw[exc.start]:#04x}); convert the file, e.g. iconv -f latin1 -t utf-8") from None
    return texts
