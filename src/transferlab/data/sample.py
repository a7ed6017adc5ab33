"""The clothing sample shipped inside the package (CC0): DATA `sample` works offline, from a fresh install.

320 photos of clothes in 10 classes — a set far from ImageNet's dogs — built by scripts/make_clothing_sample.py;
its LICENSE and SOURCE.md travel with it.
"""

import importlib.resources
from pathlib import Path

NAME = "sample"
FOLDER = "clothing_sample"


def sample_dir() -> Path:
    """Where the sample's `train/<class>/` and `val/<class>/` folders are installed."""
    return Path(str(importlib.resources.files("transferlab.data") / FOLDER))
