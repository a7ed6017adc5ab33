"""What transferlab learnt about each photo, kept across runs: its content hash, by path, size and modification time,
and whether it decodes (or why not), by content hash. A second run over Stanford Dogs' 20,580 photos reads none of
them to check them again; a photo whose bytes change is hashed and checked again.

One SQLite file in the cache folder (`photos.sqlite`), shared by every process on the machine (SQLite locks it).
A cache that cannot be opened or written is skipped with a warning: the checks then run as if it were empty.
"""

import hashlib
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Callable, Sequence

from ..files import cache_dir, installed_version

log = logging.getLogger(__name__)

CHECK_VERSION = 1
"""Bumped when what makes a photo readable changes (formats, limits): older verdicts are then not used."""


def _check_key() -> str:
    """Verdicts hold for this check and these decoders: a new Pillow or torchvision checks every photo again."""
    import PIL  # Pillow-SIMD and the like install under another name

    pillow = installed_version("pillow") or PIL.__version__
    return f"{CHECK_VERSION}/pillow-{pillow}/torchvision-{installed_version('torchvision')}"


CHUNK = 500
"""Rows per SQL query (SQLite limits the number of parameters in one statement)."""


def _threads() -> int:
    return min(8, os.cpu_count() or 1)


def file_hash(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def _hash_if_readable(path: Path) -> str | None:
    try:
        return file_hash(path)
    except OSError:
        return None


class PhotoCache:
    """Content hashes and decode verdicts of photos; see the module's docstring."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "photos.sqlite"

    @classmethod
    def in_cache(cls, data_dir: str | Path | None) -> "PhotoCache":
        """The photo cache of a cache folder (`--data-dir`; default as `files.cache_dir`)."""
        return cls(cache_dir(data_dir) / "photos.sqlite")

    def _connect(self) -> sqlite3.Connection | None:
        connection = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=60)
            connection.executescript(
                "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, hash TEXT);"
                "CREATE TABLE IF NOT EXISTS verdicts (hash TEXT, version TEXT, reason TEXT, PRIMARY KEY (hash, version));"
            )
            return connection
        except (sqlite3.Error, OSError) as error:
            if connection is not None:
                connection.close()
            log.warning("photo cache %s unusable (%s); checking every photo", self.path, error)
            return None

    def hashes(self, paths: Sequence[Path]) -> list[str]:
        """The content hash of every path: from the cache when the file's size and mtime are unchanged, else read
        (an OSError for a file that cannot be read)."""
        return self._hashes(paths, file_hash)  # type: ignore[return-value]  (file_hash raises rather than answer None)

    def _hashes(self, paths: Sequence[Path], hash_file: Callable[[Path], str | None]) -> list[str | None]:
        keys = [str(Path(p).absolute()) for p in paths]
        stats = [os.stat(p) for p in paths]
        with closing(self._connect() or _Nothing()) as db:
            known = _select(db, "SELECT path, size, mtime_ns, hash FROM hashes WHERE path IN ({})", keys)
            found: dict[str, str | None] = {key: row[2] for key, row in known.items()}
            stale = [i for i, (key, st) in enumerate(zip(keys, stats)) if known.get(key, (None, None))[:2] != (st.st_size, st.st_mtime_ns)]
            with ThreadPoolExecutor(_threads()) as pool:
                fresh = list(pool.map(hash_file, [Path(paths[i]) for i in stale]))
            for i, digest in zip(stale, fresh):
                found[keys[i]] = digest
            _write(db, "INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)",
                   [(keys[i], stats[i].st_size, stats[i].st_mtime_ns, found[keys[i]]) for i in stale if found[keys[i]] is not None])
        return [found[key] for key in keys]

    def verdicts(self, paths: Sequence[Path], check: Callable[[Path], str | None]) -> list[str | None]:
        """Why each path cannot be used as a photo (None: it decodes), from the cache by content hash, else `check`
        (which also speaks for files that are not there)."""
        present = [path for path in paths if os.path.isfile(path)]
        found = dict(zip(present, self._verdicts(present, check)))
        return [found[path] if path in found else check(path) for path in paths]

    def _verdicts(self, paths: Sequence[Path], check: Callable[[Path], str | None]) -> list[str | None]:
        digests = self._hashes(paths, _hash_if_readable)
        unreadable = [path for path, digest in zip(paths, digests) if digest is None]  # `check` says why
        key = _check_key()
        with closing(self._connect() or _Nothing()) as db:
            known = _select(db, "SELECT hash, reason FROM verdicts WHERE version = ? AND hash IN ({})", sorted({d for d in digests if d}), key)
            missing = {digest: path for path, digest in zip(paths, digests) if digest is not None and digest not in known}
            with ThreadPoolExecutor(_threads()) as pool:
                reasons = dict(zip(missing, pool.map(check, missing.values())))
                failures = dict(zip(unreadable, pool.map(check, unreadable)))
            _write(db, "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?)", [(digest, key, reason) for digest, reason in reasons.items()])
        verdict = {digest: row[0] for digest, row in known.items()} | reasons
        return [verdict[digest] if digest is not None else failures[path] for path, digest in zip(paths, digests)]


class _Nothing:
    """Stands for an unusable cache: answers no query, keeps nothing."""

    def close(self) -> None:
        pass


def _select(db: sqlite3.Connection | _Nothing, query: str, keys: Sequence[str], *before: str) -> dict[str, tuple]:
    """Rows whose first column is one of `keys`, by that key (the rest of the row as a tuple); `before` are the
    query's parameters that come before the list of keys."""
    if isinstance(db, _Nothing):
        return {}
    rows: dict[str, tuple] = {}
    try:
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            for row in db.execute(query.format(",".join("?" * len(chunk))), (*before, *chunk)):
                rows[row[0]] = tuple(row[1:])
    except sqlite3.Error as error:
        log.warning("photo cache unreadable (%s); checking every photo", error)
        return {}
    return rows


def _write(db: sqlite3.Connection | _Nothing, statement: str, rows: list[tuple]) -> None:
    if isinstance(db, _Nothing) or not rows:
        return
    try:
        with db:
            db.executemany(statement, rows)
    except sqlite3.Error as error:  # a full disk, a read-only cache: the run goes on without remembering
        log.warning("photo cache not updated (%s)", error)
