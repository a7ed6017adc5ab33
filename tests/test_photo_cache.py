"""Photo checks remembered across runs: hashed and decoded once, again only when a photo's bytes change."""

import os
import time

from transferlab.data import photo_cache
from transferlab.data.decode import check_image
from transferlab.data.photo_cache import PhotoCache


def _counting(function, calls):
    def counted(path):
        calls.append(path)
        return function(path)

    return counted


def test_verdicts_are_remembered_and_a_changed_photo_is_checked_again(image_tree, tmp_path, monkeypatch):
    root = image_tree({"a": 3, "b": 3})
    paths = sorted(root.rglob("*.jpg"))
    cache = PhotoCache(tmp_path / "photos.sqlite")
    checked, hashed = [], []
    monkeypatch.setattr(photo_cache, "file_hash", _counting(photo_cache.file_hash, hashed))
    assert cache.verdicts(paths, _counting(check_image, checked)) == [None] * 6
    assert len(checked) == 6 and len(hashed) == 6

    checked.clear(), hashed.clear()
    assert cache.verdicts(paths, _counting(check_image, checked)) == [None] * 6
    assert checked == [] and hashed == []  # nothing read, nothing decoded

    time.sleep(0.01)
    paths[2].write_bytes(b"not a photo any more")
    verdicts = cache.verdicts(paths, _counting(check_image, checked))
    assert checked == [paths[2]] and hashed == [paths[2]]
    assert verdicts[2] is not None and "not an image" in verdicts[2] and verdicts.count(None) == 5


def test_a_missing_file_and_an_unusable_cache(image_tree, tmp_path, caplog):
    root = image_tree({"a": 2})
    paths = sorted(root.rglob("*.jpg")) + [root / "gone.jpg"]
    blocked = tmp_path / "photos.sqlite"
    blocked.mkdir()  # a folder where the database should be
    verdicts = PhotoCache(blocked).verdicts(paths, check_image)
    assert verdicts[:2] == [None, None] and "file not found" in verdicts[2]
    assert "unusable" in caplog.text
    assert PhotoCache(blocked).hashes(paths[:2]) == [photo_cache.file_hash(p) for p in paths[:2]]
    assert os.path.isdir(blocked)
