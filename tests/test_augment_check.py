"""tlab augment check: a destructive op stands out, mild ones do not."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from transferlab.cli import app
from transferlab.evaluate.augment_check import FLAG_DROP
from transferlab.report.html import build_report

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_an_upside_down_rotation_is_flagged_and_mild_ops_are_not(woof_frozen_run, tmp_path):
    """Dogs upside down are not what a dog classifier was shown: a 180° rotation is flagged; a horizontal flip, a
    slight contrast change and a small shift are not."""
    import shutil

    run = shutil.copytree(woof_frozen_run.path, tmp_path / "run")  # the shared run keeps no check
    ops = tmp_path / "ops.yaml"
    ops.write_text(yaml.safe_dump([
        {"op": "rotation", "degrees": [180, 180]},
        {"op": "flip", "mode": "horizontal"},
        {"op": "contrast", "factor": 0.1},
        {"op": "translation", "height": 0.05, "width": 0.05},
    ]))
    result = runner.invoke(app, ["augment", "check", str(run), "--augment", str(ops)])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "augment_check.json").read_text())
    flagged = {check["op"]: check["flagged"] for check in record["ops"]}
    assert flagged == {"rotation": True, "flip": False, "contrast": False, "translation": False}, record["summary"]
    rotation = next(check for check in record["ops"] if check["op"] == "rotation")
    assert rotation["drop"] >= FLAG_DROP and record["clean_accuracy"] > 0.5
    assert "FLAGGED" in result.output
    html, _ = build_report(run)
    assert "Does each op keep the label?" in html.read_text()
