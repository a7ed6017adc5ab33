"""Figures: the data (sample grid, images per class) and a run's accuracy/loss curves, as in the notebook."""

import io
import math
import random
import textwrap
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..data.datasets import square_view
from ..data.names import plural
from ..data.decode import UnreadableImageError, load_uint8
from ..data.sources import DatasetIndex
from ..evaluate.calibration import BINS, expected_calibration_error, reliability
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(f"{strategy}: accuracy and loss per epoch")
    figure.tight_layout()
    return figure


PHOTO_PNG_COMPRESSION = 1
"""zlib level of figures that show photos: photos barely compress (the mistakes figure: 2.3 MB at level 1, 2.0 MB at
the default 6), and level 1 writes them in half the time (0.9 s instead of 1.6-2.0 s on a 2-core Xeon)."""


def shows_photos(figure: Figure) -> bool:
    """Whether `figure` shows a photo (an RGB image; a confusion matrix is a one-channel one)."""
    return any(image.get_array().ndim == 3 for ax in figure.axes for image in ax.images)


def save_figure(figure: Figure, path: Path) -> None:
    """Write `figure` as a PNG, atomically (quickly compressed when it shows photos: `PHOTO_PNG_COMPRESSION`)."""
    buffer = io.BytesIO()
    options = {"pil_kwargs": {"compress_level": PHOTO_PNG_COMPRESSION}} if shows_photos(figure) else {}
    figure.savefig(buffer, format="png", dpi=110, **options)
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
    out: RunDir, names: Sequence[str], predictions: Mapping[str, Predictions] | None = None, noun: str = "class",
    explainer: Callable[[str], Any] | None = None, temperatures: Mapping[str, float] | None = None,
) -> None:
    """plots/confusion_, mistakes_ and calibration_<strategy>.png from `predictions` (default: the predictions.csv in
    `out`); `noun` is what the classes are called ("class", "breed"). With `explainer` (strategy → a `Predictor` with
    its PyTorch model, or None), each mistake is shown beside the Grad-CAM maps of the answer given and of the truth."""
    for strategy, predictions in (predictions or read_predictions(out.predictions_file)).items():
        confusion = confusion_matrix(predictions.labels, predictions.predicted, len(names))
        save_figure(confusion_figure(confusion, names, strategy, noun), out.plot_file(f"confusion_{strategy}"))
        predictor = explainer(strategy) if explainer else None
        figure = mistakes_figure(predictions, confident_mistakes(predictions), names, strategy, predictor=predictor)
        save_figure(figure, out.plot_file(f"mistakes_{strategy}"))
        temperature = (temperatures or {}).get(strategy, 1.0)
        save_figure(calibration_figure(predictions, strategy, temperature), out.plot_file(f"calibration_{strategy}"))


PANEL_GAP = 0.05
"""White between the panels of one mistake, as a share of a panel's width."""
CAPTION_CHARACTERS = 30
"""A caption line longer than this (a long class name) wraps once, then is cut with an ellipsis: at 8 pt, 30
characters fill a 2.3-inch panel; more would run into the next panel's caption or the photos above."""


def caption(*lines: str) -> str:
    """A mistake's caption: each line wrapped to `CAPTION_CHARACTERS`, at most two rows a line."""
    return "\n".join(textwrap.fill(line, CAPTION_CHARACTERS, max_lines=2, placeholder="…") for line in lines)


def side_by_side(images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[float]]:
    """(H, W, 3) uint8 images of one size in a row, `PANEL_GAP` white between them; and the x centre of each."""
    height, width = images[0].shape[:2]
    gap = np.full((height, max(1, round(width * PANEL_GAP)), 3), 255, np.uint8)
    row = [part for image in images for part in (image, gap)][:-1]
    return np.concatenate(row, axis=1), [index * (width + gap.shape[1]) + width / 2 for index in range(len(images))]


@LITERAL_TEXT
def mistakes_figure(
    predictions: Any, indices: Sequence[int], names: Sequence[str], strategy: str, image_size: int = 160, predictor: Any = None,
) -> Figure:
    """The most confident mistakes: each photo captioned with its true class and the wrong answer's probability; with
    a `predictor`, beside it the Grad-CAM overlays of the wrong answer and of the true class (what each saw), on the
    model's view of the photo (else the photo at `image_size`). A mistake's panels are one image in one axes, laid out
    by fixed margins: 24 axes under constrained layout took 2.6 s to draw woof-mini's eight mistakes, this 1.0 s."""
    per_row = 2 if predictor is not None else 4
    panels = 3 if predictor is not None else 1
    rows = max(1, math.ceil(len(indices) / per_row))
    height = 3.1 * rows + 0.85  # inches: a 2.3-inch panel and its caption (up to four rows) per row, the title on top
    figure = Figure(figsize=(2.3 * panels * per_row, height))
    axes = figure.subplots(rows, per_row, squeeze=False, gridspec_kw={
        "left": 0.005, "right": 0.995, "bottom": 0.05 / height, "top": 1 - 0.85 / height, "wspace": 0.04, "hspace": 0.33,
    })
    to_square = square_view(image_size)
    for ax, i in zip(axes.flat, indices):
        true, said = names[predictions.labels[i]], names[predictions.predicted[i]]
        captions = [caption(f"true: {true}", f"said ({predictions.probability[i]:.0%}): {said}")]
        try:
            if predictor is not None:
                explained = predictor.explain([predictions.paths[i]] * 2, 1, [said, true])  # one pass for both
                images = [explained[0].image] + [explanation.overlay for explanation in explained]
                captions += [caption("looked at, for", name) for name in (said, true)]
            else:
                images = [to_square(load_uint8(predictions.paths[i], min_size=image_size)).permute(1, 2, 0).numpy()]
        except UnreadableImageError:
            ax.text(0.5, 0.5, f"photo not found\n{captions[0]}", ha="center", va="center", fontsize=8, transform=ax.transAxes)
            continue
        row, centres = side_by_side(images)
        ax.imshow(row)
        for x, text in zip(centres, captions):
            ax.text(x, -0.02 * row.shape[0], text, ha="center", va="bottom", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    if not indices:
        figure.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
    title = "the most confident mistakes" + (", and where the model looked (Grad-CAM) for each answer" if predictor else "")
    figure.suptitle(f"{strategy}: {title}", y=1 - 0.1 / height, va="top")
    return figure


COVERAGE_MARKS = (0.5, 0.8, 0.9, 0.95)
"""Minimum confidences marked on the accuracy-coverage curve."""


def accuracy_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Selective classification: answering only the photos with the highest confidence, (threshold, coverage,
    accuracy) at each possible cut, most confident first."""
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    answered = np.arange(1, len(order) + 1)
    return confidence[order], answered / len(order), hits / answered


def calibration_figure(predictions: Predictions, strategy: str, temperature: float) -> Figure:
    """Left: the reliability diagram (accuracy per confidence bin, raw and calibrated, against the diagonal); right:
    accuracy against coverage when photos below a minimum confidence are answered "not sure"."""
    figure = Figure(figsize=(11, 4.4), layout="constrained")
    reliability_ax, coverage_ax = figure.subplots(1, 2)
    width = 1.0 / BINS
    centres = (np.arange(BINS) + 0.5) * width
    for probability, label, style in (
        (predictions.raw, "raw", {"fill": False, "edgecolor": "#555555", "hatch": "//", "width": width * 0.95}),
        (predictions.probability, f"calibrated (T = {temperature:.2f})", {"color": "#4c72b0", "alpha": 0.8, "width": width * 0.6}),
    ):
        table = reliability(probability, predictions.correct)
        shown = np.array(table["count"]) > 0
        ece = expected_calibration_error(probability, predictions.correct)
        reliability_ax.bar(centres[shown], np.array(table["accuracy"])[shown], label=f"{label}: ECE {ece:.3f}", **style)
    reliability_ax.plot([0, 1], [0, 1], linestyle="--", color="black", linewidth=1, label="perfectly calibrated")
    reliability_ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence of the top answer", ylabel="accuracy of those answers",
                       title="reliability: is 80 % sure right 80 % of the time?")
    reliability_ax.legend(loc="upper left", fontsize=8)
    thresholds, coverage, accuracy = accuracy_coverage(predictions.probability, predictions.correct)
    coverage_ax.plot(coverage, accuracy, color="#4c72b0", label="answering the most confident photos first")
    for mark, colour in zip(COVERAGE_MARKS, ("#dd8452", "#55a868", "#c44e52", "#8172b3")):
        kept = thresholds >= mark
        if kept.any():
            last = int(np.flatnonzero(kept)[-1])
            coverage_ax.plot(coverage[last], accuracy[last], marker="o", linestyle="none", color=colour,
                             label=f"min. confidence {mark:.0%}: {coverage[last]:.0%} answered, {accuracy[last]:.1%} right")
    low = float(accuracy.min()) if len(accuracy) else 0.0
    coverage_ax.set(xlim=(0, 1.02), ylim=(max(0.0, min(low - 0.05, 0.9)), 1.01), xlabel="photos answered (the rest: not sure)",
                    ylabel="accuracy of the answers", title="--min-confidence: accuracy against coverage")
    coverage_ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    coverage_ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    coverage_ax.grid(alpha=0.3)
    coverage_ax.legend(loc="lower left", fontsize=8)
    figure.suptitle(f"{strategy}: how far its confidence can be trusted")
    return figure


def coverage_at(predictions: Predictions, marks: Sequence[float] = COVERAGE_MARKS) -> list[dict[str, float]]:
    """For each minimum confidence: the share of photos answered and the accuracy of those answers."""
    rows = []
    for mark in marks:
        answered = predictions.probability >= mark
        rows.append({
            "min_confidence": mark, "coverage": float(answered.mean()),
            "accuracy": float(predictions.correct[answered].mean()) if answered.any() else None,
        })
    return rows
