from collections import Counter

import pytest
from PIL import Image

from conftest import make_image
from transferlab.data.decode import UnreadableImageError, load_rgb
from transferlab.data.sources import DataSourceError, folder_source


def test_train_val_layout_sorted_classes(image_tree):
    root = image_tree({"n02099601-golden_retriever": 3, "n02086240-Shih-Tzu": 2}, split="train")
    image_tree({"n02099601-golden_retriever": 1, "n02086240-Shih-Tzu": 1}, split="val", root=root)
    index = folder_source(root)
    assert index.classes == ("n02086240-Shih-Tzu", "n02099601-golden_retriever")
    assert index.readable_names == ("Shih-Tzu", "golden retriever")
    assert len(index.train) == 5 and len(index.val) == 2
    assert index.counts("train") == {"n02086240-Shih-Tzu": 2, "n02099601-golden_retriever": 3}


def test_flat_layout_split_is_stratified_and_seeded(image_tree):
    root = image_tree({"a": 10, "b": 20, "c": 5})
    index = folder_source(root, val_fraction=0.2, seed=1)
    val_counts = Counter(index.classes[s.label] for s in index.val)
    assert val_counts == {"a": 2, "b": 4, "c": 1}
    assert len(index.train) + len(index.val) == 35
    assert not {s.path for s in index.train} & {s.path for s in index.val}
    assert folder_source(root, val_fraction=0.2, seed=1).val == index.val
    assert folder_source(root, val_fraction=0.2, seed=2).val != index.val


@pytest.mark.parametrize("ext", [".jpg", ".JPEG", ".Png", ".webp", ".BMP", ".jpeg"])
def test_extensions_in_any_case(image_tree, ext):
    root = image_tree({"a": 3, "b": 3}, ext=ext)
    assert len(folder_source(root).train) + len(folder_source(root).val) == 6


def test_non_images_are_ignored(image_tree):
    root = image_tree({"a": 3, "b": 3})
    (root / "a" / "notes.txt").write_text("not a photo")
    index = folder_source(root)
    assert all(s.path.suffix == ".jpg" for s in index.train + index.val)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataSourceError, match="no such folder"):
        folder_source(tmp_path / "nope")


def test_class_without_images_is_named(image_tree):
    root = image_tree({"a": 3, "b": 3})
    (root / "empty_class").mkdir()
    with pytest.raises(DataSourceError, match="empty_class"):
        folder_source(root)


def test_val_class_not_in_train_is_named(image_tree):
    root = image_tree({"a": 2, "b": 2}, split="train")
    image_tree({"a": 1, "zebra": 1}, split="val", root=root)
    with pytest.raises(DataSourceError, match="zebra"):
        folder_source(root)


def test_a_single_class_is_refused(image_tree):
    with pytest.raises(DataSourceError, match="at least 2 classes"):
        folder_source(image_tree({"a": 4}))


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    ext = ".jpg" if mode in ("L", "CMYK") else ".png"
    path = make_image(tmp_path / f"x{ext}", mode=mode)
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (48, 40)


def test_alpha_is_composed_over_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(path)
    assert load_rgb(path).getpixel((0, 0)) == (255, 255, 255)


def test_text_file_named_jpg_is_a_clear_error(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("hello")
    with pytest.raises(UnreadableImageError, match="fake.jpg"):
        load_rgb(path)
