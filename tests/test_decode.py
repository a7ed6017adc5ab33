"""Decoding: every image mode becomes RGB, broken files are named with a reason, and bad photos never stop a run."""

import csv
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image
from transferlab.config import TrainConfig
from transferlab.data import decode
from transferlab.data.decode import ImageTooLargeError, UnreadableImageError, check_image, load_rgb, load_uint8
from transferlab.data.scan import drop_unreadable, find_unreadable
from transferlab.data.sources import DataSourceError, folder_source
from transferlab.experiment import train


def _truncated_jpeg(path):
    make_image(path, size=(120, 90))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _write(content: bytes):
    def build(path):
        path.write_bytes(content)
        return path

    return build


def _gif(path):
    Image.new("P", (20, 20)).save(path, format="GIF")
    return path


BROKEN = {
    "truncated JPEG": (_truncated_jpeg, "truncated"),
    "zero bytes": (_write(b""), "empty file"),
    "text named .jpg": (_write(b"hello, not a photo"), "not an image file"),
    "GIF named .jpg": (_gif, "unsupported format GIF"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_files_are_named_with_their_reason(tmp_path, case):
    build, reason = BROKEN[case]
    path = build(tmp_path / "photo.jpg")
    for load in (load_rgb, load_uint8):
        with pytest.raises(UnreadableImageError, match=reason) as error:
            load(path)
        assert str(path) in str(error.value)
    assert reason in check_image(path)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16"])
def test_every_mode_becomes_rgb_in_both_decoders(tmp_path, mode):
    ext = ".jpg" if mode in ("L", "CMYK") else ".png"
    if mode == "I;16":
        path = tmp_path / "deep.png"
        Image.fromarray(np.full((40, 48), 40000, dtype=np.uint16)).save(path)
        assert Image.open(path).mode.startswith("I")
    else:
        path = make_image(tmp_path / f"x{ext}", mode=mode)
    tensor = load_uint8(path)
    assert tensor.dtype == torch.uint8 and tensor.shape == (3, 40, 48)
    if mode == "I;16":
        assert tensor.unique().tolist() == [40000 // 256]
    if ext == ".png":
        assert torch.equal(tensor, torch.from_numpy(np.array(load_rgb(path))).permute(2, 0, 1))


def test_cmyk_jpeg_colours_are_right(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path, quality=100)
    assert load_uint8(path)[:, 16, 16].tolist() == pytest.approx([255, 0, 0], abs=3)


def test_transparency_is_composed_over_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(path)
    assert load_uint8(path)[:, 0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("size", [None, 20])
def test_exif_orientation_is_applied(tmp_path, size):
    """A 80x40 photo tagged 'rotate 90' is seen as 40x80, by torchvision.io and by Pillow's draft path alike."""
    path = tmp_path / "rotated.jpg"
    image = Image.new("RGB", (80, 40), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif)
    _, height, width = load_uint8(path, min_size=size).shape
    assert height == 2 * width
    assert load_rgb(path).size == (40, 80)


def test_large_jpeg_decodes_at_reduced_scale(tmp_path):
    path = make_image(tmp_path / "big.jpg", size=(1200, 900))
    assert load_uint8(path).shape[1:] == (900, 1200)
    small = load_uint8(path, min_size=224)
    assert min(small.shape[1:]) >= 224 and small.shape[1] < 900


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = make_image(tmp_path / "huge.png", size=(300, 200))
    monkeypatch.setattr(decode, "MAX_PIXELS", 50_000)
    with pytest.raises(UnreadableImageError, match="decompression bomb"):
        load_uint8(path)


def test_pillows_own_bomb_refusal_is_reported_as_ours_and_its_limit_left_alone(tmp_path, monkeypatch):
    from PIL import Image

    path = make_image(tmp_path / "big.png", size=(48, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 900)  # a user's own, stricter limit: 1,920 pixels is over twice it
    with pytest.raises(ImageTooLargeError, match="big.png: over Pillow's limit of 900 pixels .* decompression bomb"):
        load_uint8(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # past the limit, not twice it: Pillow warns, and with
    with warnings.catch_warnings():  # warnings as errors (pytest -W error, a user's filter) that is ours too
        warnings.simplefilter("error")
        with pytest.raises(ImageTooLargeError, match="over Pillow's limit of 1,500 pixels"):
            load_uint8(path)


def test_unsupported_extensions_are_listed_as_skipped(image_tree):
    root = image_tree({"a": 3, "b": 3})
    (root / "a" / "scan.tiff").write_bytes(b"II*\x00")
    (root / "a" / "notes.txt").write_text("ignored silently")
    index = folder_source(root)
    assert [(s.path.name, "unsupported format" in s.reason) for s in index.skipped] == [("scan.tiff", True)]


def test_unreadable_photos_are_dropped_and_a_class_left_empty_is_an_error(image_tree):
    root = image_tree({"a": 4, "b": 4}, split="train")
    image_tree({"a": 1, "b": 1}, split="val", root=root)
    (root / "train" / "a" / "img0.jpg").write_bytes(b"")
    index = drop_unreadable(folder_source(root))
    assert len(index.train) == 7 and [s.path.name for s in index.skipped] == ["img0.jpg"]
    for i in range(4):
        (root / "train" / "b" / f"img{i}.jpg").write_text("text")
    with pytest.raises(DataSourceError, match="no readable training photo left in class.*b"):
        drop_unreadable(folder_source(root))


def test_classes_too_thin_to_learn_or_to_measure_are_warned_about(image_tree, caplog):
    root = image_tree({"many": 8, "few": 4, "one": 1})  # split 80/20: 6 + 2, 3 + 1, 1 + 0
    with caplog.at_level("WARNING", logger="transferlab.data.scan"):
        drop_unreadable(folder_source(root))
    warned = {record.getMessage().split("class ")[1].split(" has")[0]: record.getMessage() for record in caplog.records}
    assert set(warned) == {"few", "one"}
    assert "only 3 training photo(s)" in warned["few"] and "validation" not in warned["few"]
    assert "only 1 training photo(s) and no validation photo" in warned["one"] and str(root) in warned["one"]


def test_find_unreadable_keeps_order_and_reasons(tmp_path):
    good = make_image(tmp_path / "good.jpg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert [(s.path, "empty" in s.reason) for s in find_unreadable([good, empty])] == [(empty, True)]


def test_training_goes_on_past_bad_photos_and_lists_them(image_tree, tmp_path):
    root = image_tree({"a": 6, "b": 6})
    _truncated_jpeg(root / "a" / "cut.jpg")
    (root / "b" / "fake.jpg").write_text("not a photo")
    (root / "b" / "empty.png").write_bytes(b"")
    config = TrainConfig(
        data=str(root), out=str(tmp_path / "run"), strategy="frozen", epochs=1, batch_size=4, image_size=64, augment="none"
    )
    run = train(config)
    with open(run.skipped_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["path"].rsplit("/", 1)[-1]: row["reason"].split(" (")[0] for row in rows} == {
        "cut.jpg": "cannot decode image",
        "fake.jpg": "not an image file",
        "empty.png": "empty file",
    }
    assert len(run.read_history("frozen")) == 1
