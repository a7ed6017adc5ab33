"""The Stanford Dogs source: the official `images.tar` + `lists.tar`, fetched into a cache and extracted safely.

Cache layout (`cache_dir()/stanford-dogs/`): the two archives as downloaded, `extracted/` (`Images/<wnid>-<breed>/`,
`lists/*.mat`) and `manifest.json`, written last: without it, or with archives whose sha256 no longer matches
it, the cache is prepared again. The split is the official one (validation = the 8,580-photo test list).
"""

import json
import logging
import os
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np

from ..files import cache_dir, exclusive_lock, write_atomic
from .download import DownloadError, fetch, is_remote, join_source, progress_bar, sha256_of
from .sources import DataSourceError, DatasetIndex, Sample

log = logging.getLogger(__name__)

NAME = "stanford-dogs"
OFFICIAL_URL = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
SOURCE_ENV = "TLAB_STANFORD_DOGS_URL"
ARCHIVES = ("images.tar", "lists.tar")
CHECKSUMS_FILE = "SHA256SUMS"
LIST_FILES = ("file_list.mat", "train_list.mat", "test_list.mat")


def source_url(source: str | None = None) -> str:
    """`source`, else $TLAB_STANFORD_DOGS_URL, else the official site."""
    return source or os.environ.get(SOURCE_ENV) or OFFICIAL_URL


def _offline_help(error: DownloadError, source: str) -> DataSourceError:
    return DataSourceError(
        f"could not fetch Stanford Dogs: {error}. If this machine is offline, download {' and '.join(ARCHIVES)} "
        f"from {OFFICIAL_URL} elsewhere, put them in one folder, and pass --source-url FOLDER "
        f"(or set {SOURCE_ENV}); a mirror URL works the same way."
    )


def _expected_checksums(source: str, folder: Path) -> dict[str, str]:
    """sha256 per archive from the source's SHA256SUMS (`<hex>  <name>` lines), when it has one."""
    target = folder / (CHECKSUMS_FILE + ".source")
    try:
        fetch(join_source(source, CHECKSUMS_FILE), target)
    except DownloadError:
        return {}
    sums = {}
    for line in target.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    target.unlink()
    return sums


def _download_archives(source: str, folder: Path) -> dict[str, dict]:
    expected = _expected_checksums(source, folder)
    records = {}
    for name in ARCHIVES:
        archive = folder / name
        if not archive.is_file():
            url = join_source(source, name)
            log.info("fetching %s", url)
            try:
                if is_remote(source):
                    with progress_bar(f"{NAME} {name}") as progress:
                        fetch(url, archive, progress)
                else:
                    fetch(url, archive)
            except DownloadError as error:
                raise _offline_help(error, source) from None
        digest = sha256_of(archive)
        if name in expected and expected[name] != digest:
            archive.unlink()
            raise DataSourceError(
                f"{join_source(source, name)}: checksum mismatch (sha256 {digest}, {CHECKSUMS_FILE} says "
                f"{expected[name]}); the copy is corrupt and was deleted: run again to download it again"
            )
        records[name] = {"sha256": digest, "bytes": archive.stat().st_size}
    return records


def _extract(archive: Path, target: Path) -> None:
    """Extract every member, refusing absolute paths, '..' and links that leave `target`."""
    try:
        with tarfile.open(archive) as tar:
            absolute = [member.name for member in tar.getmembers() if member.name.startswith(("/", "\\"))]
            if absolute:
                raise DataSourceError(
                    f"{archive}: unsafe member refused (absolute path {absolute[0]}); this is not the official archive"
                )
            tar.extractall(target, filter="data")
    except tarfile.FilterError as error:
        raise DataSourceError(f"{archive}: unsafe member refused ({error}); this is not the official archive") from None
    except (tarfile.TarError, EOFError, OSError) as error:
        archive.unlink(missing_ok=True)
        raise DataSourceError(
            f"{archive}: the archive does not read completely ({error}); it was deleted: run again to download it again"
        ) from None


def _read_list(path: Path) -> tuple[list[str], list[int]]:
    """(file paths relative to Images/, 1-based labels) of one official `.mat` list."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
        files = [str(np.asarray(entry).ravel()[0]) for entry in mat["file_list"].ravel()]
        labels = [int(label) for label in np.asarray(mat["labels"]).ravel()]
    except (KeyError, ValueError, OSError, IndexError) as error:
        raise DataSourceError(f"{path}: not an official Stanford Dogs list ({error})") from None
    if len(files) != len(labels):
        raise DataSourceError(f"{path}: {len(files)} files but {len(labels)} labels")
    return files, labels


def _check_complete(extracted: Path) -> dict[str, int]:
    """Counts of the lists, after checking every listed photo was extracted and train + test = all."""
    lists = {name: _read_list(extracted / "lists" / name) for name in LIST_FILES}
    everything, _ = lists["file_list.mat"]
    missing = [name for name in everything if not (extracted / "Images" / name).is_file()]
    if missing:
        raise DataSourceError(
            f"{extracted}: {len(missing)} of {len(everything)} listed photos are not in images.tar (first: {missing[0]})"
        )
    train, test = len(lists["train_list.mat"][0]), len(lists["test_list.mat"][0])
    if train + test != len(everything):
        raise DataSourceError(f"{extracted}: train ({train}) + test ({test}) lists do not add up to {len(everything)} files")
    return {"images": len(everything), "train": train, "test": test}


def _manifest_is_valid(folder: Path) -> bool:
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file() or not (folder / "extracted").is_dir():
        return False
    manifest = json.loads(manifest_file.read_text())
    for name, record in manifest["archives"].items():
        archive = folder / name
        if archive.is_file() and sha256_of(archive) != record["sha256"]:
            log.warning("%s: sha256 differs from the one recorded at download; fetching and extracting it again", archive)
            archive.unlink()
            manifest_file.unlink()
            return False
    return True


def prepare(data_dir: str | Path | None = None, source: str | None = None) -> Path:
    """The extracted dataset folder (with `Images/` and `lists/`), fetching and extracting it on first use."""
    folder = cache_dir(data_dir) / NAME
    if _manifest_is_valid(folder):
        return folder / "extracted"
    source = source_url(source)
    with exclusive_lock(folder / ".lock", f"{folder}: another process is preparing it; waiting"):
        if _manifest_is_valid(folder):  # prepared by the process we waited for
            return folder / "extracted"
        return _fetch_and_extract(folder, source)


def _fetch_and_extract(folder: Path, source: str) -> Path:
    manifest_file = folder / "manifest.json"
    manifest_file.unlink(missing_ok=True)
    shutil.rmtree(folder / "extracted", ignore_errors=True)
    records = _download_archives(source, folder)

    staging = folder / f"extracted.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _extract(folder / "images.tar", staging)
        _extract(folder / "lists.tar", staging / "lists")
        counts = _check_complete(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(folder / "extracted")
    manifest = {"source": source, "archives": records, "counts": counts, "prepared": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_atomic(manifest_file, json.dumps(manifest, indent=2) + "\n")
    return folder / "extracted"


def stanford_dogs_source(data_dir: str | Path | None = None, source: str | None = None) -> DatasetIndex:
    """Index Stanford Dogs with its official split: train_list.mat for training, test_list.mat for validation."""
    extracted = prepare(data_dir, source)
    train_files, train_labels = _read_list(extracted / "lists" / "train_list.mat")
    test_files, test_labels = _read_list(extracted / "lists" / "test_list.mat")
    folder_of_label: dict[int, str] = {}
    for name, label in zip(train_files + test_files, train_labels + test_labels):
        folder = name.split("/", 1)[0]
        if folder_of_label.setdefault(label, folder) != folder:
            raise DataSourceError(f"{extracted / 'lists'}: label {label} names both {folder_of_label[label]} and {folder}")
    classes = tuple(sorted(set(folder_of_label.values())))
    index_of = {folder: i for i, folder in enumerate(classes)}

    def samples(files: list[str]) -> tuple[Sample, ...]:
        return tuple(Sample(extracted / "Images" / name, index_of[name.split("/", 1)[0]]) for name in files)

    return DatasetIndex(root=extracted, classes=classes, train=samples(train_files), val=samples(test_files))
