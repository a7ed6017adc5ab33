"""A run interrupted anywhere resumes to the same history and the same best model as an uninterrupted one;
checkpoints are written in place, atomically, and a damaged one is named in one line."""

import pytest
import lightning as L
import torch

from transferlab.config import TrainConfig
from transferlab.models.weights import WeightsError
from transferlab.train import checkpoints
from transferlab.models.checkpoints import METADATA_KEY, read_checkpoint
from transferlab.rundir import RunDir, RunDirError
from transferlab.experiment import train


class Crash(RuntimeError):
    pass


class CrashIn(L.Callback):
    """Raises in `hook` ("train_batch" or "validation_batch") of `epoch` (1-based), as a kill there would."""

    def __init__(self, hook: str, epoch: int):
        self.hook, self.epoch = hook, epoch

    def _maybe(self, trainer):
        if trainer.current_epoch + 1 == self.epoch:
            raise Crash(f"killed in {self.hook} of epoch {self.epoch}")

    def on_train_batch_end(self, trainer, *args):
        if self.hook == "train_batch":
            self._maybe(trainer)

    def on_validation_batch_end(self, trainer, *args):
        if self.hook == "validation_batch" and not trainer.sanity_checking:
            self._maybe(trainer)


def _config(root, out, **extra):
    settings = dict(
        data=str(root), out=str(out), strategy="frozen", epochs=4, batch_size=4, image_size=48, augment="seed-all",
        cache=False, runtime="torch", lr=0.05,
    )
    return TrainConfig(**{**settings, **extra})


def _record(out):
    """What must not depend on interruptions: history (but seconds), metrics (but seconds), best weights."""
    run = RunDir(out)
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in run.read_history()]
    metrics = {s: {k: v for k, v in m.items() if "seconds" not in k} for s, m in run.read_metrics().items()}
    best = {s: read_checkpoint(run.best_checkpoint(s)) for s in run.read_metrics()}
    return history, metrics, best


def _assert_same_run(out, reference):
    history, metrics, best = _record(out)
    want_history, want_metrics, want_best = reference
    assert history == want_history
    assert metrics == want_metrics
    for strategy, checkpoint in best.items():
        assert checkpoint[METADATA_KEY]["epoch"] == metrics[strategy]["best_epoch"]
        assert checkpoint[METADATA_KEY]["best_val_acc"] == metrics[strategy]["best_val_acc"]
        for key, value in want_best[strategy]["state_dict"].items():
            assert torch.equal(checkpoint["state_dict"][key], value), key
        files = sorted(p.name for p in RunDir(out).checkpoint_dir(strategy).iterdir())
        assert files == ["best.ckpt", "last.ckpt"], files


@pytest.fixture(scope="module")
def uninterrupted(three_classes, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    train(_config(three_classes, out))
    return _record(out)


@pytest.mark.parametrize("hook, epoch", [("train_batch", 2), ("validation_batch", 2), ("train_batch", 4)])
def test_killed_inside_an_epoch_resumes_to_the_uninterrupted_result(three_classes, uninterrupted, tmp_path, hook, epoch):
    with pytest.raises(Crash):
        train(_config(three_classes, tmp_path / "run"), callbacks=[CrashIn(hook, epoch)])
    train(_config(three_classes, tmp_path / "run"))
    _assert_same_run(tmp_path / "run", uninterrupted)


def test_killed_between_history_row_and_checkpoint(three_classes, uninterrupted, tmp_path, monkeypatch):
    original = RunDir.append_history

    def append_then_die(self, row):
        original(self, row)
        if row["epoch"] == 3:
            raise Crash("killed after the history row of epoch 3")

    monkeypatch.setattr(RunDir, "append_history", append_then_die)
    with pytest.raises(Crash):
        train(_config(three_classes, tmp_path / "run"))
    assert [r["epoch"] for r in RunDir(tmp_path / "run").read_history()] == [1, 2, 3]
    monkeypatch.setattr(RunDir, "append_history", original)
    train(_config(three_classes, tmp_path / "run"))
    _assert_same_run(tmp_path / "run", uninterrupted)


@pytest.mark.parametrize("epoch", [1, 2, 3, 4])
def test_killed_between_last_and_best_checkpoint(three_classes, uninterrupted, tmp_path, monkeypatch, epoch):
    """Whichever epoch improves, a kill before its best.ckpt is written loses nothing."""
    original = checkpoints.write_atomic
    calls = {"n": 0}

    def die_before_best(path, data, durable=True):
        if path.name == "best.ckpt" and RunDir(tmp_path / "run").read_history()[-1]["epoch"] == epoch:
            calls["n"] += 1
            raise Crash("killed before best.ckpt")
        original(path, data, durable)

    monkeypatch.setattr(checkpoints, "write_atomic", die_before_best)
    try:
        train(_config(three_classes, tmp_path / "run"))
    except Crash:
        pass
    monkeypatch.setattr(checkpoints, "write_atomic", original)
    if calls["n"]:
        train(_config(three_classes, tmp_path / "run"))
    _assert_same_run(tmp_path / "run", uninterrupted)


def test_finetune_killed_in_its_first_epoch_matches_an_uninterrupted_finetune(three_classes, tmp_path):
    """The frozen stage is loaded, not retrained, on resume: finetune must still draw the same numbers."""
    settings = dict(strategy="finetune", epochs=2, frozen_epochs=2, lr=None)
    train(_config(three_classes, tmp_path / "whole", **settings))
    with pytest.raises(Crash):
        train(_config(three_classes, tmp_path / "run", **settings), callbacks=[CrashIn("train_batch", 1)])
    train(_config(three_classes, tmp_path / "run", **settings))
    _assert_same_run(tmp_path / "run", _record(tmp_path / "whole"))


def test_a_damaged_last_checkpoint_resumes_from_the_best_one(three_classes, uninterrupted, tmp_path, caplog):
    with pytest.raises(Crash):
        train(_config(three_classes, tmp_path / "run"), callbacks=[CrashIn("train_batch", 4)])
    run = RunDir(tmp_path / "run")
    run.last_checkpoint("frozen").write_bytes(b"\x00garbage" * 100)
    train(_config(three_classes, tmp_path / "run"))
    assert "last.ckpt: not a readable checkpoint" in caplog.text and "resuming from best.ckpt" in caplog.text
    _assert_same_run(tmp_path / "run", uninterrupted)


def test_no_readable_checkpoint_is_one_line_naming_the_file_and_the_flag(three_classes, tmp_path):
    with pytest.raises(Crash):
        train(_config(three_classes, tmp_path / "run"), callbacks=[CrashIn("train_batch", 3)])
    run = RunDir(tmp_path / "run")
    for path in (run.last_checkpoint("frozen"), run.best_checkpoint("frozen")):
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError, match=r"last\.ckpt: not a readable checkpoint.*--overwrite"):
        train(_config(three_classes, tmp_path / "run"))
    again = train(_config(three_classes, tmp_path / "run", overwrite=True))
    assert [r["epoch"] for r in again.read_history()] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "not a readable checkpoint"),
        (b"\x80\x04\x95" + b"\x00" * 40, "not a readable checkpoint"),
    ],
)
def test_read_checkpoint_names_the_file(tmp_path, content, reason):
    path = tmp_path / "best.ckpt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=f"best.ckpt: {reason}"):
        read_checkpoint(path)


def test_a_pickled_program_is_refused_without_running_it(tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "best.ckpt"
    with open(path, "wb") as handle:
        torch.save({"state_dict": {}, "x": Exploit()}, handle, pickle_module=pickle)
    with pytest.raises(WeightsError) as error:
        read_checkpoint(path)
    assert not marker.exists()
    assert "weights_only=False" not in str(error.value)


def test_early_stopping_resumes_with_the_patience_it_had(three_classes, tmp_path):
    """EarlyStopping's count of epochs without improvement travels in last.ckpt: killed in the epoch after one
    that did not improve val_loss, the resumed run stops where an uninterrupted one does."""
    settings = dict(epochs=10, early_stop=2, lr=0.5)
    train(_config(three_classes, tmp_path / "whole", **settings))
    whole = _record(tmp_path / "whole")
    losses = [row["val_loss"] for row in whole[0]]
    worse = [e for e in range(2, len(losses)) if losses[e - 1] >= min(losses[: e - 1])]  # 1-based epochs
    assert worse, f"no epoch without improvement to test with: {losses}"
    with pytest.raises(Crash):
        train(_config(three_classes, tmp_path / "run", **settings), callbacks=[CrashIn("train_batch", worse[0] + 1)])
    train(_config(three_classes, tmp_path / "run", **settings))
    _assert_same_run(tmp_path / "run", whole)


@pytest.mark.parametrize("content, says", [
    (b"", "(an empty file)"),
    (b"PK\x03\x04" + bytes(500), "(damaged, truncated, or not a PyTorch checkpoint)"),  # a zip without its directory
])
def test_an_unreadable_checkpoint_says_so_in_a_users_words(tmp_path, content, says):
    path = tmp_path / "best.ckpt"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as error:
        read_checkpoint(path)
    assert str(error.value) == f"{path}: not a readable checkpoint {says}"


def test_a_checkpoint_the_system_cannot_read_says_why(tmp_path):
    folder = tmp_path / "best.ckpt"
    folder.mkdir()  # an OSError from the system (here: a folder), reported in its words
    with pytest.raises(WeightsError, match=r"best.ckpt: cannot read it \(Is a directory\)"):
        read_checkpoint(folder)
