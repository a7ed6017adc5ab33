"""CSV manifests: path,label[,split], paths relative to the CSV file."""

import pytest

from conftest import make_image
from transferlab.data.resolve import open_data
from transferlab.data.sources import DataSourceError, csv_source, select_classes


def _photos(tmp_path, n_per_class=4):
    for label in ("cat", "dog"):
        for i in range(n_per_class):
            make_image(tmp_path / "pics" / f"{label}{i}.png", seed=i)


def test_manifest_with_split_and_relative_paths(tmp_path):
    _photos(tmp_path)
    lines = ["path,label,split"] + [
        f"pics/{label}{i}.png,{label},{'val' if i == 0 else 'train'}" for label in ("dog", "cat") for i in range(4)
    ]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    index = open_data(tmp_path / "data.csv")
    assert index.classes == ("cat", "dog")
    assert len(index.train) == 6 and len(index.val) == 2
    assert {(s.path.name, index.classes[s.label]) for s in index.val} == {("cat0.png", "cat"), ("dog0.png", "dog")}
    assert all(s.path.is_absolute() or s.path.exists() for s in index.train)


def test_manifest_without_split_or_header_is_split_per_class(tmp_path):
    _photos(tmp_path, 5)
    (tmp_path / "m.csv").write_text("".join(f"pics/{lab}{i}.png,{lab}\n" for lab in ("cat", "dog") for i in range(5)))
    index = csv_source(tmp_path / "m.csv", val_fraction=0.2, seed=3)
    assert len(index.val) == 2 and len(index.train) == 8


def test_missing_files_are_skipped_not_fatal(tmp_path):
    _photos(tmp_path)
    rows = [f"pics/{lab}{i}.png,{lab},train" for lab in ("cat", "dog") for i in range(1, 4)]
    rows += ["pics/cat0.png,cat,val", "pics/dog0.png,dog,test", "pics/gone.png,dog,train"]
    (tmp_path / "m.csv").write_text("path,label,split\n" + "\n".join(rows))
    index = csv_source(tmp_path / "m.csv")
    assert [s.path.name for s in index.skipped] == ["gone.png"]
    assert "line 10" in index.skipped[0].reason
    assert len(index.val) == 2


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("path,label,split\npics/cat0.png,cat,holdout\n", "line 2: split 'holdout'"),
        ("path,label\npics/cat0.png\n", "line 2: expected path,label"),
        ("path,label\n", "no rows"),
        ("path,label\npics/cat0.png,cat\npics/cat1.png,cat\n", "at least 2 classes"),
    ],
)
def test_bad_manifests_name_the_line(tmp_path, content, fragment):
    _photos(tmp_path)
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(DataSourceError, match=fragment):
        csv_source(tmp_path / "m.csv")


def test_breeds_subset_by_count_and_by_name(image_tree):
    root = image_tree({"n02085620-Chihuahua": 2, "n02088364-beagle": 2, "n02111889-Samoyed": 2})
    assert select_classes(open_data(root), 2).classes == ("n02085620-Chihuahua", "n02088364-beagle")
    picked = select_classes(open_data(root), "samoyed, Beagle")
    assert picked.classes == ("n02088364-beagle", "n02111889-Samoyed")
    assert sorted({s.label for s in picked.train + picked.val}) == [0, 1]
    assert select_classes(open_data(root), "n02085620,n02111889").classes == ("n02085620-Chihuahua", "n02111889-Samoyed")
    with pytest.raises(DataSourceError, match="did you mean beagle"):
        select_classes(open_data(root), "beagel,Samoyed")
    with pytest.raises(DataSourceError, match="between 2 and 3"):
        select_classes(open_data(root), 7)


def test_a_manifest_that_is_not_utf8_names_the_line(tmp_path):
    """A CSV saved as Latin-1 (Excel does) was a UnicodeDecodeError traceback."""
    manifest = tmp_path / "labels.csv"
    manifest.write_bytes("path,label\na.jpg,hat\ncaf\xe9.jpg,hat\n".encode("latin-1"))
    with pytest.raises(DataSourceError, match=r"labels.csv, line 3: not UTF-8 text \(byte 0xe9\); save the CSV as UTF-8"):
        csv_source(manifest)
