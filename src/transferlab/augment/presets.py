"""The named augmentation pipelines, as data: each a list of op configs (`{"op": name, setting: value}`)."""

from typing import Any

OpConfig = dict[str, Any]

PRESETS: dict[str, list[OpConfig]] = {
    "none": [],
    "seed-keras": [
        {"op": "rotation", "factor": 0.15},
        {"op": "translation", "height": 0.1, "width": 0.1},
        {"op": "flip", "mode": "both"},
        {"op": "contrast", "factor": 0.1},
    ],
    "seed-all": [
        {"op": "crop", "scale": [0.6, 1.0]},
        {"op": "rotation", "degrees": 20},
        {"op": "translation", "height": 0.1, "width": 0.1},
        {"op": "flip", "mode": "horizontal"},
        {"op": "contrast", "factor": 0.2},
        {"op": "brightness", "delta": 0.08},
        {"op": "downsample", "factor": [1.0, 2.5], "p": 0.3},
        {"op": "noise", "sigma": [0.0, 0.03], "p": 0.5},
    ],
}
