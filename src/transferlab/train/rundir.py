"""The run directory: every file a run leaves behind, written atomically (temp file + rename)."""

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..data.sources import Skipped
from ..files import write_atomic, write_csv_atomic

HISTORY_COLUMNS = ("epoch", "strategy", "train_loss", "train_acc", "val_loss", "val_acc", "val_photos", "lr", "seconds")
INTEGER_COLUMNS = {"epoch", "val_photos"}


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (finished, or holding another run); says what to do."""


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
    def diagnosis_file(self) -> Path:
        return self.path / "diagnosis.json"

    @property
    def report_file(self) -> Path:
        return self.path / "report.html"

    @property
    def report_markdown_file(self) -> Path:
        return self.path / "report.md"

    def read_config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_file.read_text())

    def read_classes(self) -> list[dict[str, Any]]:
        return json.loads(self.classes_file.read_text())

    def read_evaluation(self) -> dict[str, Any]:
        return json.loads(self.evaluation_file.read_text()) if self.evaluation_file.exists() else {}

    def trained_strategies(self) -> list[str]:
        """Strategies with a best checkpoint, in the notebook's order."""
        return [s for s in ("scratch", "frozen", "finetune") if self.best_checkpoint(s).is_file()]

    @property
    def skipped_file(self) -> Path:
        return self.path / "skipped.csv"

    def write_skipped(self, skipped: Sequence[Skipped]) -> None:
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

    def read_history(self, strategy: str | None = None) -> list[dict[str, Any]]:
        """History rows (numbers parsed), optionally only those of one strategy."""
        if not self.history_file.exists():
            return []
        with open(self.history_file, newline="") as handle:
            rows = list(csv.DictReader(handle))
        parsed = [{key: _parse_cell(key, value) for key, value in row.items()} for row in rows]
        return [row for row in parsed if strategy is None or row["strategy"] == strategy]

    def append_history(self, row: dict[str, Any]) -> None:
        """Add one epoch; a row for the same (strategy, epoch) replaces the old one."""
        rows = [r for r in self.read_history() if (r["strategy"], r["epoch"]) != (row["strategy"], row["epoch"])]
        rows.append(row)
        write_csv_atomic(self.history_file, HISTORY_COLUMNS, rows)

    def read_metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics_file.read_text()) if self.metrics_file.exists() else {}

    def update_metrics(self, strategy: str, values: dict[str, Any]) -> None:
        metrics = self.read_metrics()
        metrics[strategy] = values
        self.write_json(self.metrics_file, metrics)


def _parse_cell(column: str, text: str) -> str | int | float | None:
    """A history cell as its type; empty (a column added after the row was written) as None."""
    if column == "strategy":
        return text
    if text == "":
        return None
    return int(text) if column in INTEGER_COLUMNS else float(text)
