"""One photo's explanation: what the model saw, its answers, and the Grad-CAM heatmap of the class explained."""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .gradcam import overlay

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..inference import Prediction


@dataclass(frozen=True)
class Explanation:
    """`image` is the model's view of the photo (resized, cropped; (H, W, 3) uint8), `heatmap` (H, W) in [0, 1]
    the Grad-CAM map of `explained` (a class name), `predictions` the top-k answers, best first."""

    path: str | None
    predictions: "tuple[Prediction, ...]"
    explained: str
    explained_label: str
    heatmap: np.ndarray
    image: np.ndarray

    @property
    def overlay(self) -> np.ndarray:
        """The photo with the heatmap laid over it, (H, W, 3) uint8."""
        return overlay(self.image, self.heatmap)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "explained": self.explained, "predictions": [p.as_dict() for p in self.predictions]}

    def caption(self) -> str:
        return " · ".join(f"{p.label} {p.probability:.0%}" for p in self.predictions)

    def figure(self) -> "Figure":
        """The photo beside its overlay, titled with the answers and the class explained."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6.4, 3.6), layout="constrained")
        left, right = figure.subplots(1, 2)
        left.imshow(self.image)
        left.set_title(_ellipsize(Path(self.path).name if self.path else "photo", 34), fontsize=9, parse_math=False)
        right.imshow(self.overlay)
        right.set_title(_ellipsize(f"Grad-CAM: {self.explained_label}", 34), fontsize=9, parse_math=False)
        for axis in (left, right):
            axis.set_axis_off()
        figure.suptitle(_ellipsize(self.caption(), 80), fontsize=10, parse_math=False)
        return figure

    def save(self, path: str | Path) -> Path:
        """The figure as a PNG at `path`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.figure().savefig(path, dpi=110)
        return path


def output_names(paths: "list[Path]") -> list[str]:
    """`<stem>.gradcam.png` for each photo; photos with the same stem in different folders get `-2`, `-3`..."""
    names, seen = [], {}
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.gradcam.png" if seen[stem] == 1 else f"{stem}-{seen[stem]}.gradcam.png")
    return names


def _ellipsize(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
