"""Figures of a run: the notebook's accuracy/loss curves."""

import io
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..files import write_atomic  # noqa: E402


def history_figure(rows: Sequence[dict[str, Any]], strategy: str) -> Figure:
    """Two panels as in the notebook: accuracy and loss per epoch, train vs validation."""
    epochs = [row["epoch"] for row in rows]
    figure, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, label in ((acc_ax, "acc", "accuracy"), (loss_ax, "loss", "loss")):
        ax.plot(epochs, [row[f"train_{metric}"] for row in rows], marker="o", label="train")
        ax.plot(epochs, [row[f"val_{metric}"] for row in rows], marker="o", label="validation")
        ax.set_title(f"model {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
        if len(epochs) < 15:
            ax.set_xticks(epochs)
    figure.suptitle(f"{strategy}: accuracy and loss per epoch")
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: Path) -> None:
    """Write `figure` as a PNG, atomically, and release it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())
