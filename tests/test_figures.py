"""Report figures: integer epochs on the curves, mistakes whose captions never cover a photo, the calibration plot,
photo figures written quickly."""

import io
import itertools

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from conftest import make_image
from transferlab.evaluate.metrics import Predictions
from transferlab.explain.explanation import Explanation
from transferlab.report.plots import PANEL_GAP, calibration_figure, history_figure, mistakes_figure, save_figure, shows_photos


def _row(epoch: int) -> dict:
    return {"epoch": epoch, "strategy": "frozen", "train_loss": 1.0 / epoch, "train_acc": 0.5, "val_loss": 1.0 / epoch,
            "val_acc": 0.6, "lr": 0.01, "seconds": 1.5}


def _predictions(paths: list[str]) -> Predictions:
    n = len(paths)
    labels = np.arange(n) % 3
    predicted = (labels + 1) % 3
    return Predictions("frozen", tuple(paths), labels, predicted, np.linspace(0.99, 0.6, n), np.stack([predicted, labels], 1),
                       np.linspace(0.999, 0.7, n))


class _Explainer:
    """Stands in for a Predictor: a heatmap of the right size for any photo and class."""

    def explain(self, paths, top_k, class_names):
        heatmaps = [np.random.default_rng(len(name)).random((64, 64)).astype(np.float32) for name in class_names]
        return [Explanation(str(path), (), name, name, heatmap, np.zeros((64, 64, 3), np.uint8))
                for path, name, heatmap in zip(paths, class_names, heatmaps)]


def _overlaps(figure) -> list[str]:
    """Captions (axes titles, texts, the figure's title) whose drawn box runs into a photo or into another caption."""
    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    photos = [ax.get_window_extent(renderer) for ax in figure.axes if ax.images]
    captions = [text for ax in figure.axes for text in (ax.title, *ax.texts) if text.get_text()] + list(figure.texts)
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in captions]
    found = [f"{text!r} covers a photo" for text, box in boxes if any(box.overlaps(photo) for photo in photos)]
    found += [f"{a!r} runs into {b!r}" for (a, box), (b, other) in itertools.combinations(boxes, 2) if box.overlaps(other)]
    page = figure.bbox
    found += [f"{text!r} runs off the figure" for text, box in boxes
              if box.x0 < page.x0 or box.x1 > page.x1 or box.y0 < page.y0 or box.y1 > page.y1]
    return found


def test_curves_label_epochs_with_whole_numbers():
    figure = history_figure([_row(epoch) for epoch in range(1, 31)], "frozen")
    FigureCanvasAgg(figure).draw()
    ticks = [tick for tick in figure.axes[0].get_xticks() if 1 <= tick <= 30]
    assert ticks and all(float(tick).is_integer() for tick in ticks)


def test_mistake_captions_never_cover_the_photos_above(tmp_path):
    paths = [str(make_image(tmp_path / f"p{i}.png", size=(80, 60), seed=i)) for i in range(8)]
    names = ["a class with a rather long name", "b", "another class whose name goes on and on and on and on"]
    for explainer in (None, _Explainer()):
        figure = mistakes_figure(_predictions(paths), list(range(8)), names, "frozen", image_size=64, predictor=explainer)
        assert _overlaps(figure) == []
        shown = [ax.images[0].get_array() for ax in figure.axes if ax.images]
        assert len(shown) == 8, "one image a mistake"
        panels = 3 if explainer else 1  # the photo, then the maps of the answer given and of the truth
        gap = max(1, round(64 * PANEL_GAP))
        assert all(image.shape[:2] == (64, panels * 64 + (panels - 1) * gap) for image in shown)


def test_calibration_figure_has_the_reliability_diagram_and_the_coverage_curve(tmp_path):
    paths = [f"p{i}.png" for i in range(40)]
    figure = calibration_figure(_predictions(paths), "frozen", 1.7)
    reliability, coverage = figure.axes
    assert "reliability" in reliability.get_title() and "coverage" in coverage.get_title()
    labels = [text.get_text() for text in reliability.get_legend().get_texts()]
    assert any(label.startswith("raw: ECE") for label in labels) and any("T = 1.70" in label for label in labels)


def test_figures_of_photos_are_written_quickly_compressed_and_charts_as_before(tmp_path):
    """Photos barely compress: their figures use zlib level 1 (the same pixels, written in about half the time)."""
    photos = [str(make_image(tmp_path / f"{i}.png", size=(60 + 20 * i, 80), seed=i)) for i in range(4)]
    photo_figure = mistakes_figure(_predictions(photos), [0, 1, 2, 3], ["a", "b", "c"], "frozen")
    chart = history_figure([_row(1), _row(2)], "frozen")
    assert shows_photos(photo_figure) and not shows_photos(chart)
    save_figure(photo_figure, tmp_path / "photos.png")
    default = io.BytesIO()
    photo_figure.savefig(default, format="png", dpi=110)
    with Image.open(tmp_path / "photos.png") as quick, Image.open(default) as usual:
        assert np.array_equal(np.asarray(quick), np.asarray(usual))
    assert (tmp_path / "photos.png").stat().st_size > len(default.getvalue())  # less compressed: level 1, not 6
