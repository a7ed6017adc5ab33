"""A Stanford-Dogs-size number of classes (120) keeps the report legible: a readable confusion figure, per-class
tables sorted and folded, the HTML self-contained and small."""

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

import transferlab as tl
from transferlab.report.plots import confusion_figure

CHROMIUM = Path("/usr/bin/chromium")
CLASSES = 120


def _names() -> list[str]:
    return [f"class {i:03d} with a long readable name" for i in range(CLASSES)]


@pytest.fixture(scope="module")
def many_classes_run(tmp_path_factory):
    from conftest import make_image

    root = tmp_path_factory.mktemp("many")
    for i, name in enumerate(_names()):
        folder = name.replace(" ", "_")
        for split, count in (("train", 2), ("val", 1)):
            for j in range(count):
                make_image(root / "photos" / split / folder / f"{j}.png", size=(40, 32), seed=10 * i + j + (5 if split == "val" else 0))
    experiment = tl.Experiment(root / "photos", out=root / "run", image_size=32, batch_size=16, augment="none", runtime="torch")
    experiment.fit("frozen", epochs=1)
    experiment.evaluate()
    experiment.report()
    return experiment.run


def test_no_tick_label_overlaps_the_next_at_120_classes():
    rng = np.random.default_rng(0)
    confusion = rng.integers(0, 3, size=(CLASSES, CLASSES)) + np.diag(rng.integers(0, 10, size=CLASSES))
    figure = confusion_figure(confusion, _names(), "frozen")
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = figure.axes[0]
    assert not ax.texts, "no per-cell counts at this size"
    for labels in (ax.get_yticklabels(), ax.get_xticklabels()):
        boxes = [label.get_window_extent(renderer) for label in labels]
        assert len(boxes) == CLASSES
        assert not [i for i, (a, b) in enumerate(zip(boxes, boxes[1:])) if a.overlaps(b)]
    width, height = canvas.get_width_height()
    assert 1200 <= width <= 4000 and 1200 <= height <= 4000


def test_confused_classes_sit_together():
    from transferlab.report.plots import confusion_order

    confusion = np.eye(30, dtype=int) * 10
    confusion[3, 27] = confusion[27, 3] = 9  # 3 and 27 are confused with each other
    order = confusion_order(confusion)
    assert sorted(order) == list(range(30)) and abs(order.index(3) - order.index(27)) == 1


@pytest.mark.slow
def test_a_120_class_report_is_legible_small_and_self_contained(many_classes_run):
    html = many_classes_run.report_file.read_text()
    assert many_classes_run.report_file.stat().st_size < 10 * 2**20
    assert "<details><summary>the other 110 classes</summary>" in html
    with Image.open(many_classes_run.plot_file("confusion_frozen")) as image:
        assert 1200 <= min(image.size) and max(image.size) <= 4000


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
def test_the_120_class_report_renders_with_every_image(many_classes_run):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(many_classes_run.report_file.resolve().as_uri(), wait_until="load")
        images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        browser.close()
    assert images and [alt for alt, complete, width in images if not complete or width == 0] == []
