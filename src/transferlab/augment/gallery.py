"""Figures that show what augmentation does: random copies captioned with their ops, and each op's range."""

import random
import textwrap
from pathlib import Path

import torch
from matplotlib.figure import Figure

from ..data.datasets import square_view
from ..data.decode import load_uint8
from ..data.formats import is_image_file
from ..data.resolve import DataSpec, open_data
from .pipeline import Pipeline, seeded_generator

LEVELS = (("weakest", 0.0), ("middle", 0.5), ("strongest", 1.0))


def gallery_image(source: str | Path, image_size: int = 224, seed: int = 0) -> tuple[torch.Tensor, Path]:
    """A photo as a uint8 tensor, resized and centre-cropped: the file itself, or a seeded pick from DATA."""
    path = Path(source).expanduser()
    if not is_image_file(path):
        index = open_data(DataSpec(str(source), seed=seed))
        path = random.Random(seed).choice(index.train).path
    return square_view(image_size)(load_uint8(path)), path


def _show(ax, image: torch.Tensor, title: str) -> None:
    ax.imshow(image.permute(1, 2, 0).numpy())
    ax.set_title("\n".join(textwrap.wrap(title, 30)), fontsize=8)
    ax.axis("off")


def gallery_figure(image: torch.Tensor, pipeline: Pipeline, n: int = 9, seed: int = 0, columns: int = 4) -> Figure:
    """The original and `n` augmented copies, each captioned with the ops and parameters it got."""
    rows = -(-(n + 1) // columns)
    figure = Figure(figsize=(3 * columns, 3.3 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    flat = list(axes.flat)
    _show(flat[0], image, "original")
    for i in range(n):
        augmented, record = pipeline.run(image, seeded_generator(seed, 0, i))
        _show(flat[i + 1], augmented, pipeline.caption(record))
    for ax in flat[n + 1 :]:
        ax.remove()
    figure.tight_layout()
    return figure


def per_op_figure(image: torch.Tensor, pipeline: Pipeline) -> Figure:
    """One row per op: the original, then the op at its weakest, middle and strongest setting."""
    rows = max(1, len(pipeline.ops))
    figure = Figure(figsize=(12, 3.2 * rows))
    axes = figure.subplots(rows, 1 + len(LEVELS), squeeze=False)
    for row, op in zip(axes, pipeline.ops):
        _show(row[0], image, f"{op.name}: original")
        for ax, (label, level) in zip(row[1:], LEVELS):
            params = op.at_level(image, level)
            _show(ax, op.apply(image, params), f"{label}: {op.caption(params)}")
    figure.tight_layout()
    return figure
