"""Where transferlab keeps files, and atomic writes: readers see the old file or the new one, never half of one."""

import csv
import io
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

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


def runtimes_dir(data_dir: str | Path | None = None) -> Path:
    """Models exported for the fast runtimes, named by weight fingerprint."""
    return cache_dir(data_dir) / "runtimes"


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` to a temp file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv_atomic(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A CSV file with a header of `columns` and one line per row, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


@contextmanager
def exclusive_lock(path: Path, waiting_message: str = "") -> Iterator[None]:
    """Hold an advisory lock on `path` (created if missing) inside the block: one process at a time on this
    machine, e.g. the processes of a distributed run preparing the same cache. No-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting_message:
                log.warning(waiting_message)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
