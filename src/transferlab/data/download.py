"""Fetch a file over HTTP(S) or from a local folder into a cache, resuming a partial download with HTTP Range."""

import hashlib
import http.client
import logging
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.progress import Progress as RichProgress

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30
RETRIES = 3

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None) as a download proceeds."""


class DownloadError(OSError):
    """A file that could not be fetched; the message names the URL and the reason."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def is_remote(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def join_source(source: str, name: str) -> str:
    """`name` inside a URL or a local folder."""
    return source.rstrip("/") + "/" + name if is_remote(source) else str(Path(source.removeprefix("file://")).expanduser() / name)


def _copy_stream(stream: BinaryIO, handle: BinaryIO, done: int, total: int | None, progress: Progress | None) -> int:
    while chunk := stream.read(CHUNK_BYTES):
        handle.write(chunk)
        done += len(chunk)
        if progress:
            progress(done, total)
    return done


def _fetch_once(url: str, partial: Path, progress: Progress | None) -> None:
    """One HTTP request appending to `partial` from its current size (Range); raises on a short read."""
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "transferlab"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the partial file is already complete
            return
        raise
    with response:
        resumed = offset and response.status == 206
        if offset and not resumed:
            log.info("%s: server ignored the Range request; downloading from the start", url)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else None
        with partial.open("ab" if resumed else "wb") as handle:
            done = _copy_stream(response, handle, offset, total, progress)
    if total is not None and done < total:
        raise http.client.IncompleteRead(b"", total - done)


def fetch(source: str, destination: Path, progress: Progress | None = None) -> Path:
    """Copy `source` (http(s) URL or local path) to `destination`, via `destination.part`, resuming after a cut.

    The file appears under its final name only when complete. Raises `DownloadError` with what to do.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    if not is_remote(source):
        path = Path(source.removeprefix("file://")).expanduser()
        if not path.is_file():
            raise DownloadError(f"{path}: no such file")
        with path.open("rb") as stream, partial.open("wb") as handle:
            _copy_stream(stream, handle, 0, path.stat().st_size, progress)
        partial.replace(destination)
        return destination

    last_error: Exception | None = None
    for attempt in range(1, RETRIES + 1):
        try:
            _fetch_once(source, partial, progress)
            partial.replace(destination)
            return destination
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as error:
            last_error = error
            kept = partial.stat().st_size if partial.exists() else 0
            log.warning("%s: connection cut after %d bytes (attempt %d of %d); resuming", source, kept, attempt, RETRIES)
        except urllib.error.HTTPError as error:
            raise DownloadError(f"{source}: the server answered HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise DownloadError(f"{source}: cannot connect ({reason})") from None
    raise DownloadError(
        f"{source}: download cut {RETRIES} times ({last_error!r}); run again to resume from {partial}"
    )



@contextmanager
def progress_bar(description: str) -> Iterator[Progress]:
    """A rich progress bar on stderr for `fetch`, as a `Progress` callback."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with RichProgress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
