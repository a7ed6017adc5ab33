"""A stage's checkpoints: written atomically in their own folder, read as weights only, and kept in step with
history.csv so that an interrupted run resumes to the same history and the same best model.

After each epoch `RunCheckpoints` writes, in this order: the epoch's history row, `last.ckpt` (the whole training
state: weights, optimiser, the best so far, the random-number state), and — when validation accuracy beat every
earlier epoch — the same bytes as `best.ckpt`. A process killed between any two writes leaves files from which
`resume_point` continues exactly: rows after the checkpoint's epoch are trained again.
"""

import io
import logging
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from ..files import write_atomic
from ..models.checkpoints import METADATA_KEY, WeightsError, checkpoint_epoch, read_checkpoint
from ..rundir import RunDir, RunDirError

log = logging.getLogger(__name__)

class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O through `files.write_atomic`: a temp file beside the checkpoint, flushed,
    then renamed — never a copy from another filesystem, never half a file. Reads are weights only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getvalue())

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(Path(path))


def _rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunCheckpoints(L.Callback):
    """One epoch's record in the run directory: the history row, then last.ckpt, then best.ckpt when improved.

    The best so far (first epoch with the highest validation accuracy, as metrics.json counts it) and the
    random-number state are saved in last.ckpt and restored with it, so a resumed stage draws the same dropout
    masks and keeps the same best model as an uninterrupted one.
    """

    def __init__(self, run: RunDir, strategy: str):
        self.run = run
        self.strategy = strategy
        self.best_epoch = 0
        self.best_val_acc = float("-inf")
        self._epoch_start = 0.0

    @property
    def state_key(self) -> str:
        return f"RunCheckpoints[{self.strategy}]"

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics  # on every rank: reading them reduces them across processes
        epoch = trainer.current_epoch + 1
        val_acc = float(metrics.get("val_acc", float("nan")))
        row = {
            "epoch": epoch,
            "strategy": self.strategy,
            "train_loss": float(metrics["train_loss"]),
            "train_acc": float(metrics["train_acc"]),
            "val_loss": float(metrics.get("val_loss", float("nan"))),
            "val_acc": val_acc,
            "val_photos": int(metrics.get("val_photos", 0)),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - self._epoch_start, 3),
        }
        if trainer.global_rank == 0:
            self.run.append_history(row)
        improved = val_acc > self.best_val_acc
        if improved:
            self.best_epoch, self.best_val_acc = epoch, val_acc
        last = self.run.last_checkpoint(self.strategy)
        trainer.save_checkpoint(last, weights_only=False)  # Lightning's default, said so it logs no note; all ranks, rank 0 writes
        if improved and trainer.global_rank == 0:
            write_atomic(self.run.best_checkpoint(self.strategy), last.read_bytes())
        trainer.strategy.barrier("best.ckpt")  # the other processes read it when the stage ends

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[METADATA_KEY] = {
            "strategy": self.strategy,
            "epoch": trainer.current_epoch + 1,
            "best_epoch": self.best_epoch,
            "best_val_acc": self.best_val_acc,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "best_val_acc": self.best_val_acc, "rng": _rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_epoch = state_dict["best_epoch"]
        self.best_val_acc = state_dict["best_val_acc"]
        _set_rng_state(state_dict["rng"])


def resume_point(run: RunDir, strategy: str, lr: float, epochs: int, edit_history: bool = True) -> Path | None:
    """The checkpoint an interrupted stage continues from — last.ckpt, or best.ckpt when last.ckpt is unreadable —
    with history.csv cut back to its epoch and best.ckpt matching its best so far (by the one process that writes
    the run directory, `edit_history`); None (and nothing left of the stage) when it starts from epoch 1, as it
    does when the interrupted stage ran with another learning rate or epoch count."""
    last, best = run.last_checkpoint(strategy), run.best_checkpoint(strategy)
    problems = []
    for candidate in (last, best):
        if not candidate.is_file():
            continue
        try:
            checkpoint = read_checkpoint(candidate)
        except WeightsError as error:
            problems.append(str(error))
            continue
        hparams = checkpoint.get("hyper_parameters") or {}
        if (hparams.get("lr"), hparams.get("epochs", epochs)) != (lr, epochs):
            log.warning("%s: the interrupted stage ran with other settings (lr %s, %s epochs); starting it over",
                        strategy, hparams.get("lr"), hparams.get("epochs"))
            if edit_history:
                run.forget_stage(strategy)
            return None
        epoch = checkpoint_epoch(checkpoint)
        if problems:
            log.warning("%s; resuming from %s (epoch %d)", problems[0], candidate.name, epoch)
        if edit_history:
            run.truncate_history(strategy, epoch)
            if candidate == last:
                _match_best(best, last, checkpoint)
        return candidate
    if problems:
        raise RunDirError(f"{problems[0]}, and no readable checkpoint to resume {strategy} from; pass --overwrite to start the run again")
    if edit_history:
        run.truncate_history(strategy, 0)
    return None


def _match_best(best: Path, last: Path, checkpoint: dict[str, Any]) -> None:
    """After a kill between last.ckpt and best.ckpt, the epoch that improved is last.ckpt itself: copy it."""
    record = checkpoint.get(METADATA_KEY) or {}
    best_epoch = record.get("best_epoch")
    if best_epoch is None:
        return
    try:
        if best.is_file() and read_checkpoint(best).get(METADATA_KEY, {}).get("epoch") == best_epoch:
            return
    except WeightsError:
        pass
    if best_epoch != checkpoint_epoch(checkpoint):
        raise RunDirError(f"{best}: missing or damaged, and it held the best model (epoch {best_epoch}); pass --overwrite to start the run again")
    write_atomic(best, last.read_bytes())
