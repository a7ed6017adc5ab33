"""The stanford-dogs source against the mini archives, served from a local HTTP server: nothing reaches the internet."""

import hashlib
import io
import shutil
import tarfile

import pytest
from scipy.io import loadmat
from typer.testing import CliRunner

from http_server import FileServer
from transferlab.cli import app
from transferlab.data import download, stanford_dogs
from transferlab.data.download import DownloadError, fetch
from transferlab.data.resolve import DataSpec, open_data
from transferlab.data.sources import DataSourceError


@pytest.fixture
def mirror(stanford_mini, tmp_path):
    """A writable copy of the mini archives, served over HTTP."""
    folder = tmp_path / "mirror"
    shutil.copytree(stanford_mini, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    with FileServer(folder) as server:
        yield server


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_extract_and_official_split(mirror, tmp_path):
    index = open_data(DataSpec("stanford-dogs", data_dir=tmp_path / "cache", source_url=mirror.url))
    assert len(index.classes) == 10 and len(index.train) == 300 and len(index.val) == 100
    assert index.readable_names[2] == "beagle"
    cache = tmp_path / "cache" / "stanford-dogs"
    lists = loadmat(cache / "extracted" / "lists" / "test_list.mat")
    official = {str(f[0][0]): int(label) for f, label in zip(lists["file_list"], lists["labels"].ravel())}
    for sample in index.val:
        relative = sample.path.relative_to(cache / "extracted" / "Images").as_posix()
        assert official[relative] - 1 == sample.label
        assert relative.split("/")[0] == index.classes[sample.label]
    assert not {s.path for s in index.train} & {s.path for s in index.val}
    assert _sha256(cache / "images.tar") == _sha256(mirror.root / "images.tar")

    requests = len(mirror.requests)
    again = open_data(DataSpec("stanford-dogs", data_dir=tmp_path / "cache", source_url=mirror.url))
    assert again == index and len(mirror.requests) == requests, "a complete cache must not download again"


def test_a_cut_connection_resumes_with_range(mirror, tmp_path):
    mirror.cut_after["images.tar"] = 3_000_000
    target = tmp_path / "images.tar"
    fetch(mirror.url + "images.tar", target)
    assert _sha256(target) == _sha256(mirror.root / "images.tar")
    assert mirror.requests == [("images.tar", None), ("images.tar", "bytes=3000000-")]
    assert not (tmp_path / "images.tar.part").exists()


def test_a_partial_file_from_an_earlier_run_is_resumed(mirror, tmp_path):
    original = (mirror.root / "lists.tar").read_bytes()
    (tmp_path / "lists.tar.part").write_bytes(original[:100_000])
    fetch(mirror.url + "lists.tar", tmp_path / "lists.tar")
    assert (tmp_path / "lists.tar").read_bytes() == original
    assert mirror.requests == [("lists.tar", "bytes=100000-")]


def test_checksum_mismatch_against_the_mirrors_sums_is_refused(mirror, tmp_path):
    sums = "".join(f"{_sha256(mirror.root / name)}  {name}\n" for name in ("images.tar", "lists.tar"))
    (mirror.root / "SHA256SUMS").write_text(sums)
    data = bytearray((mirror.root / "images.tar").read_bytes())
    data[5_000_000:5_000_010] = b"corrupted!"
    (mirror.root / "images.tar").write_bytes(bytes(data))
    with pytest.raises(DataSourceError, match="images.tar: checksum mismatch"):
        open_data(DataSpec("stanford-dogs", data_dir=tmp_path / "cache", source_url=mirror.url))
    assert not (tmp_path / "cache" / "stanford-dogs" / "images.tar").exists()
    assert not (tmp_path / "cache" / "stanford-dogs" / "manifest.json").exists()


def test_a_cache_corrupted_after_download_is_fetched_again(mirror, tmp_path):
    open_data(DataSpec("stanford-dogs", data_dir=tmp_path / "cache", source_url=mirror.url))
    cached = tmp_path / "cache" / "stanford-dogs" / "images.tar"
    data = bytearray(cached.read_bytes())
    data[1000:1010] = b"0123456789"
    cached.write_bytes(bytes(data))
    requests = len(mirror.requests)
    index = open_data(DataSpec("stanford-dogs", data_dir=tmp_path / "cache", source_url=mirror.url))
    assert len(index.train) == 300
    assert ("images.tar", None) in mirror.requests[requests:]
    assert _sha256(cached) == _sha256(mirror.root / "images.tar")


def test_a_half_extracted_cache_is_not_taken_for_complete(mirror, tmp_path):
    open_data(DataSpec("stanford-dogs", data_dir=tmp_path / "cache", source_url=mirror.url))
    folder = tmp_path / "cache" / "stanford-dogs"
    (folder / "manifest.json").unlink()  # as if killed between extraction and the manifest
    shutil.rmtree(folder / "extracted" / "Images" / "n02088364-beagle")
    index = open_data(DataSpec("stanford-dogs", data_dir=tmp_path / "cache", source_url=mirror.url))
    assert index.counts("train")["n02088364-beagle"] == 30


def test_a_truncated_archive_is_reported_and_deleted(mirror, tmp_path):
    data = (mirror.root / "images.tar").read_bytes()
    (mirror.root / "images.tar").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataSourceError, match="does not read completely"):
        open_data(DataSpec("stanford-dogs", data_dir=tmp_path / "cache", source_url=mirror.url))
    assert not (tmp_path / "cache" / "stanford-dogs" / "images.tar").exists()


@pytest.mark.parametrize("member", ["../escape.txt", "/tmp/absolute.txt", "link"])
def test_unsafe_archive_members_are_refused(stanford_mini, tmp_path, member):
    folder = tmp_path / "evil"
    folder.mkdir()
    shutil.copy(stanford_mini / "lists.tar", folder / "lists.tar")
    with tarfile.open(folder / "images.tar", "w") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataSourceError, match="unsafe member refused"):
        open_data(DataSpec("stanford-dogs", data_dir=tmp_path / "cache", source_url=str(folder)))
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "cache" / "escape.txt").exists()
    assert [p.name for p in (tmp_path / "cache" / "stanford-dogs").iterdir() if "extracted" in p.name] == []


def test_local_folder_source_and_environment_variables(stanford_mini, tmp_path, monkeypatch):
    monkeypatch.setenv("TLAB_STANFORD_DOGS_URL", str(stanford_mini))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TLAB_DATA_DIR", raising=False)
    index = open_data(DataSpec("stanford-dogs", breeds="beagle,dingo"))
    assert index.readable_names == ("beagle", "dingo") and len(index.train) == 60
    assert (tmp_path / "xdg" / "transferlab" / "stanford-dogs" / "manifest.json").is_file()
    assert len(open_data(DataSpec("stanford-dogs", breeds=3)).classes) == 3


def test_offline_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "TIMEOUT_S", 2)
    result = CliRunner().invoke(
        app, ["train", "stanford-dogs", "--data-dir", str(tmp_path), "--source-url", "http://127.0.0.1:9/dogs/"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "could not fetch Stanford Dogs" in result.output and "--source-url FOLDER" in result.output
    with pytest.raises(DownloadError, match="cannot connect"):
        fetch("http://127.0.0.1:9/images.tar", tmp_path / "x.tar")
    assert stanford_dogs.OFFICIAL_URL in result.output


def test_processes_preparing_the_same_cache_at_once_download_once(mirror, tmp_path):
    """The processes of a distributed run (or two runs) start together: one fetches, the others wait and reuse."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        indexes = list(pool.map(lambda _: open_data(DataSpec("stanford-dogs", data_dir=tmp_path / "cache", source_url=mirror.url)), range(3)))
    assert indexes[0] == indexes[1] == indexes[2] and len(indexes[0].train) == 300
    fetched = sorted(name for name, _ in mirror.requests if name.endswith(".tar"))
    assert fetched == ["images.tar", "lists.tar"], mirror.requests
    assert not list((tmp_path / "cache" / "stanford-dogs").glob("extracted.partial-*"))
