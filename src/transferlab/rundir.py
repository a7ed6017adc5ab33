"""The run directory, the storage format every layer above shares: every file a run leaves behind, written
atomically (temp file + flush + rename), and the lock that lets one process write it at a time."""

import csv
import json
import logging
import math
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import yaml

from .files import LockHeld, process_lock, short_reason, write_atomic, write_csv_atomic

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "strategy", "train_loss", "train_acc", "val_loss", "val_acc", "val_photos", "lr", "seconds")
INTEGER_COLUMNS = {"epoch", "val_photos"}


class SkippedFile(Protocol):
    """A file left out of the data, and why (`data.sources.Skipped`)."""

    path: Path
    reason: str


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (finished, in use, holding another run, damaged); says what to do."""


class RunDir:
    """Paths and readers/writers of one run directory (see DESIGN.md)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def classes_file(self) -> Path:
        return self.path / "classes.json"

    @property
    def history_file(self) -> Path:
        return self.path / "history.csv"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def predictions_file(self) -> Path:
        return self.path / "predictions.csv"

    @property
    def evaluation_file(self) -> Path:
        return self.path / "evaluation.json"

    @property
    def calibration_file(self) -> Path:
        """Each strategy's temperature, fitted on the validation photos, and its calibration errors."""
        return self.path / "calibration.json"

    @property
    def augment_check_file(self) -> Path:
        """Accuracy on validation photos changed by each augmentation op (tlab augment check)."""
        return self.path / "augment_check.json"

    @property
    def curve_file(self) -> Path:
        """Validation accuracy against training photos per class (tlab curve; its plot: plots/curve.png)."""
        return self.path / "curve.json"

    @property
    def recipe_file(self) -> Path:
        """What `--recipe auto` tried and chose, per strategy (train.recipe)."""
        return self.path / "recipe.json"

    def read_recipe(self) -> dict[str, Any]:
        return self.read_json_if_there(self.recipe_file) or {}

    def read_json_if_there(self, path: Path) -> Any:
        """A JSON file of the run (recipe, curve, audit...), None when the command that writes it has not run."""
        return _read(path, json.loads) if path.is_file() else None

    @property
    def audit_file(self) -> Path:
        """The data audit's summary (its findings: audit.csv, its page: audit.html, beside it)."""
        return self.path / "audit.json"

    @property
    def diagnosis_file(self) -> Path:
        return self.path / "diagnosis.json"

    @property
    def report_file(self) -> Path:
        return self.path / "report.html"

    @property
    def report_markdown_file(self) -> Path:
        return self.path / "report.md"

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    @contextmanager
    def claimed(self) -> Iterator["RunDir"]:
        """This process alone writes the run directory inside the block; another one is refused, naming the PID
        that holds it (a lock left by a killed process is taken over)."""
        created = not self.path.exists()
        try:
            with process_lock(self.lock_file):
                try:
                    yield self
                finally:
                    if created and [entry.name for entry in self.path.iterdir()] == [self.lock_file.name]:
                        try:  # nothing was written: leave no empty run directory behind
                            self.lock_file.unlink()
                            self.path.rmdir()
                        except OSError:
                            pass  # another process came in meanwhile: the folder is its now
        except LockHeld as held:
            raise RunDirError(
                f"{self.path}: in use by process {held.pid if held.pid is not None else '(unknown)'}, which is writing "
                "there; wait for it to end, or stop it"
            ) from None

    def clear(self) -> None:
        """Remove everything the run left (for --overwrite), but the lock this process holds."""
        for entry in self.path.iterdir():
            if entry == self.lock_file:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def read_config(self) -> dict[str, Any]:
        config = _read(self.config_file, yaml.safe_load)
        if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
            raise RunDirError(f"{self.config_file}: damaged (not the settings of a transferlab run)")
        return config

    def read_classes(self) -> list[dict[str, Any]]:
        classes = _read(self.classes_file, json.loads)
        if not isinstance(classes, list) or not all(isinstance(c, dict) and "name" in c for c in classes):
            raise RunDirError(f"{self.classes_file}: damaged (expected a list of classes)")
        return classes

    def read_evaluation(self) -> dict[str, Any]:
        return _read(self.evaluation_file, json.loads) if self.evaluation_file.exists() else {}

    def read_calibration(self) -> dict[str, Any]:
        calibration = _read(self.calibration_file, json.loads) if self.calibration_file.exists() else {}
        if not isinstance(calibration, dict) or not all(isinstance(entry, dict) for entry in calibration.values()):
            raise RunDirError(f"{self.calibration_file}: damaged (expected a calibration per strategy); `tlab evaluate` fits it again")
        return calibration

    def calibration_to_update(self) -> dict[str, Any]:
        """calibration.json's entries for a writer to change, without the damaged ones (a warning names them): the
        evaluation a damaged file's error asks for repairs it, and keeps the other strategies' temperatures."""
        try:
            entries = _read(self.calibration_file, json.loads) if self.calibration_file.exists() else {}
        except RunDirError as error:  # not JSON
            log.warning("%s; written afresh", error)
            return {}
        if not isinstance(entries, dict):
            log.warning("%s: damaged (not a calibration per strategy); written afresh", self.calibration_file)
            return {}
        kept = {name: entry for name, entry in entries.items() if isinstance(entry, dict) and _positive(entry.get("temperature", 1.0))}
        if len(kept) < len(entries):
            log.warning("%s: damaged entries dropped (%s)", self.calibration_file, ", ".join(sorted(set(entries) - set(kept))))
        return kept

    def temperature(self, strategy: str) -> float:
        """The strategy's fitted temperature; 1 (the raw probabilities) before an evaluation has fitted one."""
        value = self.read_calibration().get(strategy, {}).get("temperature", 1.0)
        if not _positive(value):
            raise RunDirError(f"{self.calibration_file}: damaged ({strategy}'s temperature must be a positive number, not {value!r}); `tlab evaluate` fits it again")
        return float(value)

    def trained_strategies(self) -> list[str]:
        """Strategies with a best checkpoint, in the order they were trained (their first row in history.csv)."""
        folder = self.path / "checkpoints"
        found = {entry.name for entry in folder.iterdir() if (entry / "best.ckpt").is_file()} if folder.is_dir() else set()
        trained_order = list(dict.fromkeys(row["strategy"] for row in self.read_history()))
        return [s for s in trained_order if s in found] + sorted(found - set(trained_order))

    @property
    def skipped_file(self) -> Path:
        return self.path / "skipped.csv"

    def write_skipped(self, skipped: Sequence[SkippedFile]) -> None:
        """skipped.csv: path and reason of every file left out of the data (header only when none)."""
        write_csv_atomic(self.skipped_file, ("path", "reason"), ({"path": str(s.path), "reason": s.reason} for s in skipped))

    def checkpoint_dir(self, strategy: str) -> Path:
        return self.path / "checkpoints" / strategy

    def best_checkpoint(self, strategy: str) -> Path:
        return self.checkpoint_dir(strategy) / "best.ckpt"

    def last_checkpoint(self, strategy: str) -> Path:
        return self.checkpoint_dir(strategy) / "last.ckpt"

    def finished(self, strategies: Sequence[str]) -> bool:
        """Every strategy's metrics are written: they are written only when its training has ended."""
        metrics = self.read_metrics()
        return all(strategy in metrics for strategy in strategies)

    def plot_file(self, name: str) -> Path:
        return self.path / "plots" / f"{name}.png"

    def write_json(self, path: Path, value: Any) -> None:
        write_atomic(path, json.dumps(value, indent=2) + "\n")

    def write_config(self, config: dict[str, Any]) -> None:
        write_atomic(self.config_file, yaml.safe_dump(config, sort_keys=False))

    def record_setting(self, key: str, values: dict[str, Any]) -> None:
        """Merge `values` into config.yaml's top-level mapping `key` (e.g. the inference precision each stage kept)."""
        config = self.read_config()
        self.write_config({**config, key: {**(config.get(key) or {}), **values}})

    def read_history(self, strategy: str | None = None) -> list[dict[str, Any]]:
        """History rows (numbers parsed), optionally only those of one strategy."""
        if not self.history_file.exists():
            return []
        with open(self.history_file, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
        if reader.fieldnames is None or not set(HISTORY_COLUMNS) - {"val_photos"} <= set(reader.fieldnames):
            raise RunDirError(f"{self.history_file}: damaged (its header is not {','.join(HISTORY_COLUMNS)})")
        parsed = []
        for line, row in enumerate(rows, start=2):
            try:
                if None in row:
                    raise ValueError("more cells than columns")
                parsed.append({key: _parse_cell(key, value) for key, value in row.items() if key in HISTORY_COLUMNS})
            except (TypeError, ValueError):
                raise RunDirError(f"{self.history_file}: line {line} is damaged ({','.join(map(str, row.values()))[:80]!r})") from None
        return [row for row in parsed if strategy is None or row["strategy"] == strategy]

    def forget_stage(self, strategy: str) -> None:
        """Remove a strategy's checkpoints, history rows, metrics and curves (it is trained again)."""
        shutil.rmtree(self.checkpoint_dir(strategy), ignore_errors=True)
        self.truncate_history(strategy, 0)
        metrics = self.read_metrics()
        if metrics.pop(strategy, None) is not None:
            self.write_json(self.metrics_file, metrics)
        if self.calibration_file.exists():
            calibration = self.calibration_to_update()
            calibration.pop(strategy, None)
            self.write_json(self.calibration_file, calibration)
        self.plot_file(f"history_{strategy}").unlink(missing_ok=True)

    def truncate_history(self, strategy: str, epochs: int) -> None:
        """Keep the strategy's rows of its first `epochs` epochs (an interrupted stage trains the rest again)."""
        rows = self.read_history()
        kept = [row for row in rows if row["strategy"] != strategy or row["epoch"] <= epochs]
        if len(kept) < len(rows):
            write_csv_atomic(self.history_file, HISTORY_COLUMNS, kept)

    def append_history(self, row: dict[str, Any]) -> None:
        """Add one epoch; a row for the same (strategy, epoch) replaces the old one."""
        rows = [r for r in self.read_history() if (r["strategy"], r["epoch"]) != (row["strategy"], row["epoch"])]
        rows.append(row)
        write_csv_atomic(self.history_file, HISTORY_COLUMNS, rows)

    def read_metrics(self) -> dict[str, Any]:
        metrics = _read(self.metrics_file, json.loads) if self.metrics_file.exists() else {}
        if not isinstance(metrics, dict):
            raise RunDirError(f"{self.metrics_file}: damaged (expected metrics per strategy)")
        return metrics

    def update_metrics(self, strategy: str, values: dict[str, Any]) -> None:
        metrics = self.read_metrics()
        metrics[strategy] = values
        self.write_json(self.metrics_file, metrics)


def _positive(value: Any) -> bool:
    """A positive, finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


def _read(path: Path, parse: Callable[[str], Any]) -> Any:
    """`parse` (JSON or YAML) of a run file's text; a file that does not parse is a `RunDirError` naming it."""
    try:
        return parse(path.read_text())
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: damaged (not text)") from None
    except (ValueError, yaml.YAMLError) as error:
        raise RunDirError(f"{path}: damaged ({short_reason(error, 120)})") from None


def _parse_cell(column: str, text: str | None) -> str | int | float | None:
    """A history cell as its type; empty (a column added after the row was written) as None."""
    if column == "strategy":
        if not text:
            raise ValueError("no strategy")
        return text
    if text is None:
        raise ValueError("missing cell")
    if text == "":
        return None
    return int(text) if column in INTEGER_COLUMNS else float(text)
