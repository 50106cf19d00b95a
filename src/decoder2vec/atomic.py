"""Output folders that appear only when complete, and that never cost a user a file.

Every folder decoder2vec writes for later loading (Encoder folders, exports, converted GGUF models)
goes through `atomic_folder`:

- the files are written into a hidden sibling `.NAME.decoder2vec-partial-PID-*` and swapped in
  with renames, so a killed process never leaves a folder that looks finished; a partial folder
  left by a killed process is removed by the next write to the same place;
- the folder records what decoder2vec wrote in `.decoder2vec-output.json` (its kind and its
  files); a later write of the same kind replaces only those files and keeps everything else;
- an existing folder that is not an earlier output of the same kind is refused (one-line error),
  unless `overwrite=True`, which still replaces only the files decoder2vec writes;
- the current folder, its parents, the home folder, and the folder holding the model being saved
  (or a parent of it) are refused outright;
- the files and folders get the permissions the umask gives (0644 / 0755 under umask 022), as
  `save_pretrained` in transformers leaves them: a temporary folder is 0700 and some writers make
  their files 0600, which a service account reading a saved model could not open.

Single files (manifests, caches, results, pair files) go through `write_atomic` (and its
`write_json_atomic` / `write_npy_atomic`): written under a temporary name beside the file, then
renamed, so a reader never sees half a file; a failed write leaves nothing and is one line.

`cache_dir()` is where decoder2vec keeps what it fetches and converts ($DECODER2VEC_CACHE): here,
below every layer, so data/ finds it without importing the model loader (torch, transformers).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import Decoder2VecError

MARKER = ".decoder2vec-output.json"
CACHE_ENV = "DECODER2VEC_CACHE"
PARTIAL = "decoder2vec-partial"
REPLACED = "decoder2vec-replaced"
_WRITES = itertools.count()  # with the pid, a temporary file name no other writer (or thread) uses
# Folders that held an Encoder before folders recorded their kind: decoder2vec wrote them.
LEGACY_KIND_FILE = {"decoder2vec_config.json": "encoder"}


def output_kind(folder: Path) -> str | None:
    """The kind decoder2vec recorded in `folder`, None when it holds no decoder2vec output."""
    try:
        return json.loads((folder / MARKER).read_text())["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for name, kind in LEGACY_KIND_FILE.items():
        if (folder / name).is_file():
            return kind
    return None


def check_output_folder(target, *, kind: str, overwrite: bool = False, sources=()) -> Path:
    """Refuse, before any slow work, to write a `kind` output to `target` where that could cost a
    user a file. Returns target as a Path."""
    target = Path(target)
    where = target.resolve()
    cwd = Path.cwd().resolve()
    if where == cwd or where in cwd.parents or where == Path.home().resolve() or where == Path(where.anchor):
        raise Decoder2VecError(
            f"refusing to write the {kind} into {str(target)!r}: it is the current folder, one of its parents "
            "or the home folder; name a new folder"
        )
    for source in sources:
        if source is None:
            continue
        source = Path(source).resolve()
        if where == source or where in source.parents:
            raise Decoder2VecError(
                f"refusing to write the {kind} into {str(target)!r}: it holds the model being written "
                f"({source}); choose another folder"
            )
    if target.exists() and not target.is_dir():
        raise Decoder2VecError(f"{str(target)!r} is a file, not a folder; choose a folder for the {kind}")
    if target.is_dir() and not overwrite and any(target.iterdir()):
        found = output_kind(target)
        if found != kind:
            what = f"a decoder2vec {found} folder" if found else "not a decoder2vec output"
            raise Decoder2VecError(
                f"{str(target)!r} exists and is {what}, not a {kind} folder; choose a new folder, or pass "
                f"overwrite=True (--overwrite) to replace only the files decoder2vec writes there"
            )
    return target


def record_output(folder: Path, kind: str) -> None:
    """Write the marker: the kind and every file now in `folder` (call it after the last file)."""
    folder = Path(folder)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MARKER)
    (folder / MARKER).write_text(json.dumps({"kind": kind, "files": files}, indent=1) + "\n")


@contextlib.contextmanager
def atomic_folder(target, *, kind: str, overwrite: bool = False, keep_existing: bool = False, sources=()):
    """Yield an empty temporary folder beside `target`; when the block ends without an error its
    files replace decoder2vec's earlier files in `target` (everything else there stays).

    keep_existing: when `target` already exists, keep it as it is (another process finished the
    same work first; used for caches). On an error `target` is left as it was."""
    target = check_output_folder(target, kind=kind, overwrite=overwrite, sources=sources)
    target.parent.mkdir(parents=True, exist_ok=True)
    _finish_or_remove_leftovers(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{PARTIAL}-{os.getpid()}-"))
    try:
        yield tmp
        record_output(tmp, kind)
        if target.exists() and keep_existing:
            return
        swap_in(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (os.umask can only be
    read by setting it, which races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(folder: Path) -> None:
    """Give `folder` and everything in it the permissions a plain mkdir/open would have given:
    folders 0777 & ~umask, files 0666 & ~umask (0777 & ~umask if they were executable)."""
    mask = current_umask()
    folder = Path(folder)
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        full = 0o777 if path.is_dir() or mode & 0o111 else 0o666
        os.chmod(path, full & ~mask)


def _own_files(folder: Path) -> set[str]:
    try:
        return set(json.loads((folder / MARKER).read_text())["files"]) | {MARKER}
    except (OSError, ValueError, KeyError, TypeError):
        return {MARKER}


def swap_in(new: Path, target: Path) -> None:
    """Make the complete folder `new` (a sibling of `target`, or on its filesystem) the target: the old folder is renamed aside, `new` renamed in, then every file
    of the old folder that decoder2vec did not write and `new` does not replace is moved back.
    A kill between the steps is finished by the next write (`_finish_or_remove_leftovers`)."""
    follow_umask(new)
    if not target.exists():
        os.replace(new, target)
        return
    aside = target.parent / f".{target.name}.{REPLACED}-{os.getpid()}"
    os.replace(target, aside)
    os.replace(new, target)
    _move_back_user_files(aside, target)


def _move_back_user_files(aside: Path, target: Path) -> None:
    own = _own_files(aside)
    for path in sorted(aside.rglob("*"), key=lambda p: len(p.parts)):
        rel = path.relative_to(aside)
        if not path.exists() or str(rel) in own:
            continue
        dest = target / rel
        if path.is_dir():
            mine = any(str(p.relative_to(aside)) in own for p in path.rglob("*"))
            if not dest.exists() and not mine:
                os.replace(path, dest)  # a whole folder of the user's, moved in one go
            continue
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    # Whatever is left is decoder2vec's old output, or a user file the new output replaced by name
    # (only possible with overwrite=True, which asked for exactly that).
    shutil.rmtree(aside, ignore_errors=True)


def _finish_or_remove_leftovers(target: Path) -> None:
    """Undo what a killed earlier write left beside `target`: partial folders are removed; a
    renamed-aside old folder is put back (if the swap never happened) or has its user files moved
    into the new folder (if it did)."""
    for leftover in target.parent.glob(f".{target.name}.{PARTIAL}-*"):
        if not _alive(leftover.name.split(f"{PARTIAL}-", 1)[1].split("-")[0]):
            shutil.rmtree(leftover, ignore_errors=True)
    for aside in target.parent.glob(f".{target.name}.{REPLACED}-*"):
        if _alive(aside.name.rsplit("-", 1)[1]):
            continue
        if target.exists():
            _move_back_user_files(aside, target)
        else:
            os.replace(aside, target)


def _alive(pid: str) -> bool:
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cache_dir() -> Path:
    """Where converted models and datasets are kept: $DECODER2VEC_CACHE or ~/.cache/decoder2vec."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "decoder2vec")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Decoder2VecError(f"cannot create decoder2vec's cache folder {path}: {exc.strerror or exc}; set "
                               f"{CACHE_ENV} to a writable folder") from None
    return path


def write_atomic(path, write) -> Path:
    """Call write(temporary_path), then rename it to `path` (its folder made if missing): readers
    never see half a file. A failed write (a full disk, ...) leaves nothing and is one line naming
    the file. The temporary name `.NAME.decoder2vec-partial-N-PID` ends in the writer's pid, so a
    leftover of a killed writer can be told from one being written (corpus/shards.py)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{PARTIAL}-{next(_WRITES)}-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:  # pyarrow's and numpy's write errors are OSErrors too
        raise Decoder2VecError(write_error(path, exc)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomic(path, data, *, indent: int | None = 1) -> Path:
    """`data` as UTF-8 JSON (non-ASCII kept as is), atomically."""
    text = json.dumps(data, indent=indent, ensure_ascii=False) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_npy_atomic(path, array) -> Path:
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to the temporary name
            np.save(f, array)
    return write_atomic(path, save)


def write_error(path, exc: OSError) -> str:
    """One line: which file could not be written and why (a full disk said as such)."""
    text = str(exc).strip()
    reason = exc.strerror or (text.splitlines()[0] if text else type(exc).__name__)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "requested and" in str(exc):  # numpy's short write
        reason += " (the disk is full)"
    return f"cannot write {path}: {reason}; nothing of it was kept"
