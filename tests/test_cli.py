"""CLI errors are one clear line and exit code 2, never a traceback."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from transferlab.cli import app

runner = CliRunner()


def _train(*args: str):
    return runner.invoke(app, ["train", *args])


def _assert_usage_error(result, *fragments: str) -> None:
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in output, output


HEAVY = ("torch", "torchvision", "timm", "lightning", "sklearn", "cleanlab")


def test_the_cli_starts_without_the_heavy_libraries():
    """`tlab --help`, the flags, the strategy registry and `tlab strategies` need none of them (8 s of imports here
    before)."""
    code = (
        "import sys; from typer.testing import CliRunner; from transferlab.cli import app\n"
        "assert CliRunner().invoke(app, ['strategies']).exit_code == 0\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_help_explains_every_flag():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for flag in ("--strategy", "--backbone", "--weights", "--epochs", "--init", "--unfreeze-blocks", "--augment", "--out"):
        assert flag in result.output


def test_missing_folder(tmp_path):
    _assert_usage_error(_train(str(tmp_path / "nowhere")), "nowhere", "no such folder")


def test_class_with_no_images(image_tree):
    root = image_tree({"beagle": 3, "pug": 3})
    (root / "empty_breed").mkdir()
    _assert_usage_error(_train(str(root)), "empty_breed", "no images")


def test_unknown_backbone(image_tree):
    _assert_usage_error(_train(str(image_tree({"a": 3, "b": 3})), "--backbone", "vgg99"), "vgg99", "known:")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "three"], "--epochs"),
        (["--batch-size", "-4"], "--batch-size"),
        (["--val-fraction", "1.5"], "--val-fraction"),
        (["--strategy", "magic"], "unknown strategy 'magic'; registered: scratch, frozen, finetune, gradual"),
        (["--augment", "wild"], "wild"),
    ],
)
def test_bad_values(image_tree, args, fragment):
    _assert_usage_error(_train(str(image_tree({"a": 3, "b": 3})), *args), fragment)


def test_finetune_of_b0_without_weights_says_how(image_tree):
    result = _train(str(image_tree({"a": 3, "b": 3})), "--backbone", "efficientnet_b0", "--strategy", "finetune")
    _assert_usage_error(result, "--weights FILE")


def test_the_installed_script_exits_2_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "transferlab.cli", "train", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "missing" in result.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--epochs", "bogus=2"], "unknown strategy 'bogus'"),
        (["--epochs", "frozen=x"], "expected a number"),
        (["--strategies", "finetune"], "finetune continues from the frozen model: list frozen before it"),
        (["--strategies", "frozen,bogus"], "unknown strategy 'bogus'; registered: scratch, frozen, finetune, gradual"),
        (["--recipe", "slow"], "--recipe"),
    ],
)
def test_compare_bad_flags(image_tree, args, fragment):
    _assert_usage_error(runner.invoke(app, ["compare", str(image_tree({"a": 2, "b": 2})), *args]), fragment)


def test_evaluate_and_report_need_a_run_directory(tmp_path):
    _assert_usage_error(runner.invoke(app, ["evaluate", str(tmp_path)]), "not a run directory")
    _assert_usage_error(runner.invoke(app, ["report", str(tmp_path)]), "not a run directory")


def test_a_bad_config_file_is_named_with_the_line_or_the_key(tmp_path):
    """A setting that came from --config is named as the file's key, not as a flag nobody typed; broken YAML is one
    line with where it breaks."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: photos\nepochs: lots\n")
    _assert_usage_error(_train("--config", str(bad)), f"{bad}: epochs: Input should be a valid integer", "(got 'lots')")
    _assert_usage_error(_train("--config", str(bad), "--epochs", "0"), "--epochs: Input should be greater than or equal to 1")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\nepochs: 2\n")
    _assert_usage_error(_train("--config", str(broken)), f"--config {broken}: not valid YAML (line 2, column 7:")
