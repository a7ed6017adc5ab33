"""Where transferlab keeps files, and atomic writes: readers see the old file or the new one, never half of one."""

import csv
import errno
import functools
import io
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

if TYPE_CHECKING:
    import numpy

log = logging.getLogger(__name__)

DATA_DIR_ENV = "TLAB_DATA_DIR"


def cache_dir(data_dir: str | Path | None = None) -> Path:
    """Downloads, cached features and exported models: `data_dir`, else $TLAB_DATA_DIR, else
    $XDG_CACHE_HOME/transferlab, else ~/.cache/transferlab."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "transferlab"


@functools.cache
def installed_version(package: str) -> str | None:
    """A distribution's version for cache keys, read without importing it (torchvision would load PyTorch); None
    when it is not installed under that name. Read once a process (a search of the installed packages each time)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def runtimes_dir(data_dir: str | Path | None = None) -> Path:
    """Models exported for the fast runtimes, named by weight fingerprint."""
    return cache_dir(data_dir) / "runtimes"


_UMASK = os.umask(0)
os.umask(_UMASK)


def short_reason(error: BaseException, limit: int = 160) -> str:
    """The first line of an error's message (its type's name when it has none), for a one-line message naming a file."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def yaml_error_reason(error: BaseException) -> str:
    """Where and why YAML did not parse, in one line: "line 2, column 7: expected ',' or ']'..."."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return where + (getattr(error, "problem", None) or short_reason(error))


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_FULL


def write_atomic(path: Path, data: str | bytes, durable: bool = True) -> None:
    """Write `data` to a temp file beside `path` (same filesystem), then rename it over `path`.

    `durable` flushes the file and its folder to disk first (checkpoints, run files); a cache that can be
    recomputed skips it. On failure the temp file is removed; a full disk raises an OSError naming `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
        if durable:
            _fsync_folder(path.parent)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(error):
            raise OSError(error.errno, os.strerror(error.errno), str(path)) from None
        raise


def write_npy_atomic(path: Path, array: "numpy.ndarray") -> None:
    """An array as a .npy file, atomically, not flushed (for caches: a damaged entry is recomputed)."""
    import numpy

    buffer = io.BytesIO()
    numpy.save(buffer, array)
    write_atomic(path, buffer.getvalue(), durable=False)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_csv_atomic(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A CSV file with a header of `columns` and one line per row, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


@contextmanager
def _flocked(path: Path, when_busy: Callable[[IO[str]], None]) -> Iterator[IO[str] | None]:
    """`path` (created if missing) open and exclusively flock-ed inside the block. When another process holds it,
    `when_busy(handle)` runs first (it may raise), then the lock is awaited. Yields None where fcntl is missing."""
    try:
        import fcntl
    except ImportError:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            when_busy(handle)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def exclusive_lock(path: Path, waiting_message: str = "") -> Iterator[None]:
    """Hold an advisory lock on `path` inside the block, waiting for it: one process at a time on this machine,
    e.g. the processes of a distributed run preparing the same cache."""
    def say_so(handle: IO[str]) -> None:
        if waiting_message:
            log.warning(waiting_message)

    with _flocked(path, say_so):
        yield


class LockHeld(RuntimeError):
    """Another process holds the lock; `pid` is what it wrote there (None when unknown)."""

    def __init__(self, path: Path, pid: int | None):
        super().__init__(f"{path}: held by process {pid if pid is not None else '(unknown)'}")
        self.path = path
        self.pid = pid


_held_locks: dict[Path, int] = {}
"""Locks this process holds, with how many blocks hold each: a library call inside a CLI command that holds the
same run directory's lock (compare → build_report) goes on."""


@contextmanager
def process_lock(path: Path) -> Iterator[None]:
    """This process's claim on `path` inside the block, its PID written there; another process gets `LockHeld`
    at once. The OS drops the lock when its process ends, so a lock left by a killed process is taken over."""
    key = path.resolve()
    if key in _held_locks:
        _held_locks[key] += 1
        try:
            yield
        finally:
            _held_locks[key] -= 1
        return

    def refuse(handle: IO[str]) -> None:
        handle.seek(0)
        pid = handle.read().strip()
        raise LockHeld(path, int(pid) if pid.isdigit() else None)

    with _flocked(path, refuse) as handle:
        if handle is not None:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        _held_locks[key] = 1
        try:
            yield
        finally:
            del _held_locks[key]
