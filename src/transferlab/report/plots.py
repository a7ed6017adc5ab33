"""Figures: the data (sample grid, images per class) and a run's accuracy/loss curves, as in the notebook."""

import io
import math
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..data.datasets import square_view
from ..data.names import plural
from ..data.decode import UnreadableImageError, load_uint8
from ..data.sources import DatasetIndex
from ..evaluate.metrics import Predictions, confident_mistakes, confusion_matrix, read_predictions
from ..files import write_atomic
from ..rundir import RunDir


LITERAL_TEXT = matplotlib.rc_context({"text.parse_math": False})
"""For figures that show class names (the user's folder names and labels): a `$` is a dollar sign, not mathtext."""


@LITERAL_TEXT
def sample_grid_figure(index: DatasetIndex, n: int = 9, seed: int = 0, image_size: int = 224) -> Figure:
    """The notebook's grid: `n` seeded random training photos, each titled with its readable class name."""
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    figure = Figure(figsize=(3 * columns, 3.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
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


@LITERAL_TEXT
def class_counts_figure(index: DatasetIndex) -> Figure:
    """Horizontal bars: training and validation photos per class, readable names."""
    names = index.readable_names
    train = list(index.counts("train").values())
    val = list(index.counts("val").values())
    figure = Figure(figsize=(8, max(2.5, 0.22 * len(names) + 1.2)))
    ax = figure.subplots()
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
    figure = Figure(figsize=(11, 4.2))
    acc_ax, loss_ax = figure.subplots(1, 2)
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
    """Write `figure` as a PNG, atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())


def compare_figure(histories: dict[str, Sequence[dict[str, Any]]]) -> Figure:
    """The strategies overlaid: validation accuracy and loss per epoch (training dashed)."""
    figure = Figure(figsize=(11, 4.2))
    acc_ax, loss_ax = figure.subplots(1, 2)
    for (strategy, rows), colour in zip(histories.items(), matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]):
        epochs = [row["epoch"] for row in rows]
        for ax, metric in ((acc_ax, "acc"), (loss_ax, "loss")):
            ax.plot(epochs, [row[f"val_{metric}"] for row in rows], marker="o", color=colour, label=f"{strategy} validation")
            ax.plot(epochs, [row[f"train_{metric}"] for row in rows], linestyle="--", color=colour, alpha=0.6, label=f"{strategy} train")
    for ax, label in ((acc_ax, "accuracy"), (loss_ax, "loss")):
        ax.set_title(f"{label}: the strategies compared")
        ax.set_xlabel("epoch of the strategy")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    acc_ax.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return figure


CELL_TEXT_MAX_CLASSES = 20
"""Counts are written in the cells up to this many classes; beyond, a cell is too small to hold them."""


def confusion_order(confusion: np.ndarray) -> list[int]:
    """An order of the classes that puts those confused with each other side by side (average-linkage clustering
    of how often each pair is confused, either way); the identity for a handful of classes."""
    n = len(confusion)
    if n <= CELL_TEXT_MAX_CLASSES:
        return list(range(n))
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    similarity = rates + rates.T
    np.fill_diagonal(similarity, 0)
    distance = similarity.max() - similarity if similarity.max() > 0 else np.ones_like(similarity)
    np.fill_diagonal(distance, 0)
    return [int(i) for i in leaves_list(linkage(squareform(distance, checks=False), method="average", optimal_ordering=True))]


@LITERAL_TEXT
def confusion_figure(confusion: Sequence[Sequence[int]], names: Sequence[str], strategy: str, noun: str = "class") -> Figure:
    """Row-normalised confusion matrix with readable names: counts in the cells for a few classes; for many, the
    classes ordered so that confused ones sit together, and the figure sized so no tick label overlaps the next."""
    order = confusion_order(np.asarray(confusion))
    counts = np.asarray(confusion)[np.ix_(order, order)]
    names = [names[i] for i in order]
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    many = len(names) > CELL_TEXT_MAX_CLASSES
    fontsize = 8 if len(names) <= 30 else 6
    side = max(6.0, 0.14 * len(names) + 3.0) if many else min(4 + 0.35 * len(names), 12)
    figure = Figure(figsize=(side, side * 0.92))
    ax = figure.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ticks = list(range(len(names)))
    ax.set_xticks(ticks, names, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, names, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel(f"true {noun}")
    if not many:
        for (row, column), count in np.ndenumerate(counts):
            if count:
                colour = "white" if rates[row, column] > 0.5 else "black"
                ax.text(column, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    detail = "counts in cells" if not many else f"{len(names)} {plural(noun)} ordered so that confused ones sit together"
    ax.set_title(f"{strategy}: confusion matrix (share of each true {noun}; {detail})")
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return figure


def save_evaluation_figures(
    out: RunDir, names: Sequence[str], predictions: Mapping[str, Predictions] | None = None, noun: str = "class"
) -> None:
    """plots/confusion_<strategy>.png and plots/mistakes_<strategy>.png from `predictions` (default: the
    predictions.csv in `out`); `noun` is what the classes are called ("class", "breed")."""
    for strategy, predictions in (predictions or read_predictions(out.predictions_file)).items():
        confusion = confusion_matrix(predictions.labels, predictions.predicted, len(names))
        save_figure(confusion_figure(confusion, names, strategy, noun), out.plot_file(f"confusion_{strategy}"))
        save_figure(mistakes_figure(predictions, confident_mistakes(predictions), names, strategy), out.plot_file(f"mistakes_{strategy}"))


@LITERAL_TEXT
def mistakes_figure(predictions: Any, indices: Sequence[int], names: Sequence[str], strategy: str, image_size: int = 160) -> Figure:
    """The most confident mistakes: each photo titled with its true class and the wrong answer's probability."""
    columns = 4
    rows = max(1, math.ceil(len(indices) / columns))
    figure = Figure(figsize=(3 * columns, 3.4 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    to_square = square_view(image_size)
    for ax, i in zip(axes.flat, indices):
        try:
            ax.imshow(to_square(load_uint8(predictions.paths[i], min_size=image_size)).permute(1, 2, 0).numpy())
        except UnreadableImageError:
            ax.text(0.5, 0.5, "photo not found", ha="center", va="center")
        title = f"true: {names[predictions.labels[i]]}\nsaid: {names[predictions.predicted[i]]} ({predictions.probability[i]:.0%})"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    for ax in list(axes.flat)[len(indices):]:
        ax.remove()
    if not indices:
        figure.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
    figure.suptitle(f"{strategy}: the most confident mistakes")
    figure.tight_layout()
    return figure
