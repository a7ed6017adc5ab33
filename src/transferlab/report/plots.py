"""Figures: the data (sample grid, images per class) and a run's accuracy/loss curves, as in the notebook."""

import io
import math
import random
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..data.datasets import square_view  # noqa: E402
from ..data.decode import UnreadableImageError, load_uint8  # noqa: E402
from ..data.sources import DatasetIndex  # noqa: E402
from ..files import write_atomic  # noqa: E402


def sample_grid_figure(index: DatasetIndex, n: int = 9, seed: int = 0, image_size: int = 224) -> Figure:
    """The notebook's grid: `n` seeded random training photos, each titled with its readable breed name."""
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    to_square = square_view(image_size)
    candidates = random.Random(seed).sample(list(index.train), len(index.train))
    shown = 0
    for sample in candidates:
        if shown == n:
            break
        try:
            image = to_square(load_uint8(sample.path, min_size=image_size))
        except UnreadableImageError:
            continue
        ax = axes.flat[shown]
        ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(index.readable_names[sample.label], fontsize=10)
        ax.axis("off")
        shown += 1
    for ax in list(axes.flat)[shown:]:
        ax.remove()
    figure.tight_layout()
    return figure


def class_counts_figure(index: DatasetIndex) -> Figure:
    """Horizontal bars: training and validation photos per class, readable names."""
    names = index.readable_names
    train = list(index.counts("train").values())
    val = list(index.counts("val").values())
    figure, ax = plt.subplots(figsize=(8, max(2.5, 0.22 * len(names) + 1.2)))
    positions = range(len(names))
    ax.barh(positions, train, label="train")
    ax.barh(positions, val, left=train, label="validation")
    ax.set_yticks(list(positions), names, fontsize=8 if len(names) <= 40 else 6)
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.set_title(f"images per class ({sum(train)} train, {sum(val)} validation, {len(names)} classes)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


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
