"""A killed run resumes from its last checkpoint; a finished run is not overwritten by accident."""

import os
import signal
import subprocess
import sys
import time

import lightning as L
import pytest

from transferlab.config import TrainConfig
from transferlab.rundir import RunDirError
from transferlab.experiment import train


class CrashAt(L.Callback):
    """Raises at the start of `epoch` (1-based), as a crash would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch + 1 == self.epoch:
            raise RuntimeError("simulated crash")


def _config(root, out, **extra):
    settings = dict(data=str(root), out=str(out), strategy="frozen", epochs=4, batch_size=4, image_size=48, augment="none")
    return TrainConfig(**{**settings, **extra})


def test_a_crashed_run_resumes_after_its_last_epoch(image_tree, tmp_path):
    root = image_tree({"a": 6, "b": 6})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_config(root, tmp_path / "run"), callbacks=[CrashAt(3)])
    run = train(_config(root, tmp_path / "run"))
    assert [r["epoch"] for r in run.read_history("frozen")] == [1, 2, 3, 4]
    assert run.read_metrics()["frozen"]["epochs"] == 4


def test_a_finished_run_needs_overwrite_and_changed_settings_are_refused(image_tree, tmp_path):
    root = image_tree({"a": 6, "b": 6})
    train(_config(root, tmp_path / "run", epochs=1))
    with pytest.raises(RunDirError, match="--overwrite"):
        train(_config(root, tmp_path / "run", epochs=1))
    again = train(_config(root, tmp_path / "run", epochs=2, overwrite=True))
    assert [r["epoch"] for r in again.read_history("frozen")] == [1, 2]
    with pytest.raises(RuntimeError):
        train(_config(root, tmp_path / "crashed", epochs=3), callbacks=[CrashAt(2)])
    with pytest.raises(RunDirError, match="other settings \\(lr\\)"):
        train(_config(root, tmp_path / "crashed", epochs=3, lr=0.5))


@pytest.mark.slow
def test_sigkill_after_epoch_2_then_the_same_command_finishes(image_tree, tmp_path):
    root = image_tree({"a": 40, "b": 40})
    out = tmp_path / "run"
    command = [sys.executable, "-m", "transferlab.cli", "train", str(root), "--strategy", "frozen", "--epochs", "5",
               "--batch-size", "4", "--image-size", "64", "--augment", "none", "--no-cache", "--runtime", "torch", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    history = out / "history.csv"
    deadline = time.time() + 120
    while time.time() < deadline:
        if history.is_file() and len(history.read_text().splitlines()) >= 3:  # header + epochs 1 and 2
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    lines = history.read_text().splitlines()
    assert 3 <= len(lines) < 6, "the run must be killed after epoch 2 and before the end"
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "resuming" in finished.stderr
    epochs = [line.split(",")[0] for line in history.read_text().splitlines()[1:]]
    assert epochs == ["1", "2", "3", "4", "5"]


def test_same_seed_same_history_and_config_yaml_reruns_it(image_tree, tmp_path):
    from typer.testing import CliRunner

    from transferlab.cli import app
    from transferlab.rundir import RunDir

    root = image_tree({"a": 8, "b": 8})
    runner = CliRunner()
    first = runner.invoke(app, ["train", str(root), "--epochs", "3", "--batch-size", "4", "--image-size", "48",
                                "--augment", "seed-all", "--no-cache", "--runtime", "torch", "--out", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["train", "--config", str(tmp_path / "one" / "config.yaml"), "--out", str(tmp_path / "two")])
    assert again.exit_code == 0, again.output

    def history(name):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in RunDir(tmp_path / name).read_history()]

    assert history("one") == history("two") and len(history("one")) == 3
    assert RunDir(tmp_path / "two").read_config()["config"]["augment"] == "seed-all"


def test_resume_flag_continues_a_run_with_its_own_settings(image_tree, tmp_path):
    from typer.testing import CliRunner

    from transferlab.cli import app
    from transferlab.rundir import RunDir

    root = image_tree({"a": 6, "b": 6})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_config(root, tmp_path / "run", epochs=3, seed=7), callbacks=[CrashAt(2)])
    runner = CliRunner()
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path / "run")])
    assert resumed.exit_code == 0, resumed.output
    run = RunDir(tmp_path / "run")
    assert [r["epoch"] for r in run.read_history("frozen")] == [1, 2, 3]
    assert run.read_config()["config"]["seed"] == 7
    missing = runner.invoke(app, ["train", "--resume", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no run there" in missing.output
    finished = runner.invoke(app, ["train", "--resume", str(tmp_path / "run")])
    assert finished.exit_code == 2 and "finished run" in finished.output


def test_two_runs_at_once_into_different_directories_do_not_interfere(image_tree, tmp_path):
    """Both extract features into the same fresh cache at the same time; each gets a complete run directory,
    and with the same settings the same history."""
    from transferlab.rundir import RunDir

    root = image_tree({"a": 12, "b": 12})
    env = {**os.environ, "TLAB_DATA_DIR": str(tmp_path / "shared-cache")}
    commands = [
        [sys.executable, "-m", "transferlab", "train", str(root), "--epochs", "3", "--batch-size", "4", "--image-size", "64",
         "--runtime", "torch", "--out", str(tmp_path / name)]
        for name in ("one", "two")
    ]
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env) for c in commands]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]

    def history(name):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in RunDir(tmp_path / name).read_history()]

    assert history("one") == history("two") and len(history("one")) == 3
    for name in ("one", "two"):
        assert RunDir(tmp_path / name).finished(["frozen"])
