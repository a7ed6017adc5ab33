"""`tlab data check` and `tlab data show`."""

import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import make_image
from transferlab.cli import app

runner = CliRunner()


def test_check_a_clean_dataset(woof_mini):
    result = runner.invoke(app, ["data", "check", str(woof_mini)])
    assert result.exit_code == 0, result.output
    assert "10 classes" in result.output and "Old English sheepdog" in result.output
    assert "300" in result.output and "100" in result.output and "no errors" in result.output
    assert "too thin" not in result.output


def test_check_finds_unreadable_files_and_train_val_leaks(image_tree):
    root = image_tree({"a": 3, "b": 3}, split="train")
    make_image(root / "val" / "a" / "own.jpg", seed=501)
    make_image(root / "val" / "b" / "own.jpg", seed=502)
    shutil.copy(root / "train" / "a" / "img2.jpg", root / "val" / "a" / "copy.jpg")
    (root / "train" / "b" / "broken.jpg").write_bytes(b"")
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 1, result.output
    assert "broken.jpg: empty file" in result.output
    assert "in train and val (identical)" in result.output and "copy.jpg" in result.output
    assert "1 unreadable file(s), 1 photo(s) in both train and val" in result.output
    assert "too thin to learn or to judge: a: only 3 training photo(s)" in result.output
    assert "b: only 3 training photo(s)" in result.output  # 4 files, the empty one not counted, as training does not


def test_check_of_a_missing_folder_exits_1(tmp_path):
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "no such folder" in result.output


def test_show_writes_the_grid_and_the_counts(woof_mini, tmp_path):
    out = tmp_path / "samples.png"
    result = runner.invoke(app, ["data", "show", str(woof_mini), "--n", "4", "--image-size", "96", "--out", str(out)])
    assert result.exit_code == 0, result.output
    grid, counts = Image.open(out), Image.open(tmp_path / "samples_counts.png")
    assert grid.width > 200 and counts.height > 200


def test_a_bad_audit_setting_is_one_line(tmp_path):
    """It was a pydantic traceback with exit code 1."""
    pytest.importorskip("imagehash", reason="the audit needs the audit extra")
    result = runner.invoke(app, ["data", "audit", str(tmp_path), "--val-fraction", "0"])
    assert result.exit_code == 2 and "--val-fraction: Input should be greater than 0" in result.output
    assert "Traceback" not in result.output
