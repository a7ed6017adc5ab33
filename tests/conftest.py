"""Shared fixtures: the real photos of ../shared/data (skipped with a reason when absent) and synthetic images."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download in tests


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Feature caches and exported models of the tests go to a temporary folder, not ~/.cache."""
    os.environ["TLAB_DATA_DIR"] = str(tmp_path_factory.mktemp("tlab-cache"))

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = Path(os.environ.get("TLAB_TEST_DATA", REPO.parent / "shared" / "data"))


def _data_set(name: str) -> Path:
    path = TEST_DATA / name
    if not path.is_dir():
        pytest.skip(f"test data {path} not found; set TLAB_TEST_DATA to the folder holding {name}/ (see README)")
    return path


@pytest.fixture(scope="session")
def woof_mini() -> Path:
    """Real photos of 10 dog breeds: train/<wnid>-<breed>/*.JPEG (30 each) and val/ (10 each)."""
    return _data_set("woof-mini")


@pytest.fixture(scope="session")
def clothing_mini() -> Path:
    """400 CC0 clothing photos, 10 classes, out of ImageNet's domain: train/<class>/ and val/<class>/."""
    return _data_set("clothing-mini")


@pytest.fixture(scope="session")
def stanford_mini() -> Path:
    """The official Stanford Dogs archive layout (images.tar, lists.tar) with 10 breeds: 300 train, 100 test."""
    return _data_set("stanford-dogs-mini")


@pytest.fixture(scope="session")
def woof_frozen_run(woof_mini, tmp_path_factory):
    """A frozen Lite0 trained 3 epochs on woof-mini at 128 px and evaluated: for the tests that use a trained model."""
    from transferlab.config import TrainConfig
    from transferlab.evaluate.evaluation import evaluate_run
    from transferlab.experiment import train

    out = tmp_path_factory.mktemp("woof-frozen") / "run"
    run = train(TrainConfig(data=str(woof_mini), out=str(out), strategy="frozen", epochs=3, image_size=128))
    evaluate_run(run.path)
    return run


def make_image(path: Path, size: tuple[int, int] = (48, 40), mode: str = "RGB", seed: int = 0) -> Path:
    """A small random image in `mode`, saved by extension."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture
def image_tree(tmp_path: Path):
    """Build `root/<class>/<n>.<ext>` trees of synthetic images: image_tree({"a": 5, "b": 3}, split=None)."""

    def build(counts: dict[str, int], split: str | None = None, ext: str = ".jpg", root: Path | None = None) -> Path:
        root = root or tmp_path / "photos"
        base = root / split if split else root
        for class_index, (name, count) in enumerate(counts.items()):
            for i in range(count):
                make_image(base / name / f"img{i}{ext}", seed=class_index * 1000 + i)
        return root

    return build


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory) -> Path:
    """`a/`, `b/`, `c/` with 10 synthetic PNGs each: enough for 48-pixel runs of a few seconds."""
    root = tmp_path_factory.mktemp("three-classes")
    for c, name in enumerate(("a", "b", "c")):
        for i in range(10):
            make_image(root / name / f"{i}.png", seed=100 * c + i)
    return root


def wait_until(condition, seconds: float = 30.0) -> None:
    """Poll `condition` until it holds; fail after `seconds` (a browser page whose CSP forbids the eval behind
    Playwright's wait_for_function, a loader thread that should be loading)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
