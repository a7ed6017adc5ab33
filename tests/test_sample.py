"""The clothing sample shipped in the package: DATA `sample` offline, with its licence, and `make demo` on it."""

import importlib.resources
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from transferlab.data.resolve import data_title, open_data
from transferlab.data.sample import sample_dir

REPO = Path(__file__).resolve().parents[1]


def test_the_sample_is_in_the_package_with_its_licence_and_source():
    folder = importlib.resources.files("transferlab.data") / "clothing_sample"
    assert "CC0 1.0 Universal" in (folder / "LICENSE").read_text()
    assert "alexeygrigorev/clothing-dataset-small" in (folder / "SOURCE.md").read_text()
    photos = list(sample_dir().rglob("*.jpg"))
    files = [p.stat() for p in sample_dir().rglob("*") if p.is_file()]
    assert len(photos) == 320 and sum(f.st_size for f in files) < 3 * 2**20
    assert sum(f.st_blocks * 512 for f in files) < 3 * 2**20  # as du counts it: 320 small files round up to blocks
    index = open_data("sample")
    assert len(index.classes) == 10 and len(index.train) == 240 and len(index.val) == 80 and index.has_split
    assert data_title("sample") == "the clothing sample" and data_title("stanford-dogs") == "Stanford Dogs"


def test_class_noun_is_breed_only_for_dog_breeds():
    from transferlab.data.names import class_noun

    assert class_noun(["n02085620-Chihuahua", "n02113978-Mexican_hairless"]) == "breed"
    assert class_noun(["dress", "hat"]) == "class"
    assert class_noun(["n02085620-Chihuahua", "n03000134-chainlink_fence"]) == "class"


@pytest.mark.slow
def test_the_wheel_carries_the_sample_its_licence_and_the_page_files(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("transferlab-*.whl"))).namelist()
    assert "transferlab/data/clothing_sample/LICENSE" in names and "transferlab/data/clothing_sample/SOURCE.md" in names
    assert sum(name.startswith("transferlab/data/clothing_sample/") and name.endswith(".jpg") for name in names) == 320
    for page in ("serve.html", "serve.js", "serve.css", "report.html.j2", "report.md.j2"):
        assert f"transferlab/report/templates/{page}" in names


@pytest.mark.slow
def test_make_demo_runs_offline_on_the_sample_and_speaks_of_classes(tmp_path):
    """The README's first command, with a short recipe: no download is tried (the Stanford Dogs URL is unreachable)."""
    venv = Path(sys.executable).parents[1]
    env = {**os.environ, "TLAB_STANFORD_DOGS_URL": "http://127.0.0.1:9/unreachable", "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "demo"
    result = subprocess.run(
        ["make", "-C", str(REPO), "-o", f"{venv}/.installed", "demo", f"VENV={venv}", f"OUT={out}",
         "FLAGS=--epochs 1 --image-size 64 --strategies frozen,finetune"],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert f"Open {out}/report.html" in result.stdout and "make demo DATA=stanford-dogs" in result.stdout
    html = (out / "report.html").read_text()
    assert "transferlab: the clothing sample" in html
    for text in (html, (out / "report.md").read_text()):
        assert "breed" not in text.lower().replace("--breeds", "")
