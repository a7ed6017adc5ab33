"""Test-time augmentation: a photo's logits averaged over the photo and its flips.

By default the horizontal flip; for a run, the flips it trained with (its `flip` op: horizontal, vertical or both),
so the model is only shown views it learned to read.
"""

from typing import Any, Callable, Sequence

import numpy as np

FLIP_AXES = {"horizontal": -1, "vertical": -2}
DEFAULT_VIEWS = ("horizontal",)


def run_views(augment_ops: Sequence[dict[str, Any]] | None) -> tuple[str, ...]:
    """The flips of a run's augmentation (config.yaml `augment_ops`), else the horizontal flip."""
    for op in augment_ops or ():
        if op.get("op") == "flip":
            mode = op.get("mode", "both")
            return ("horizontal", "vertical") if mode == "both" else (mode,)
    return DEFAULT_VIEWS


def flipped(batch: np.ndarray, view: str) -> np.ndarray:
    """A normalised NCHW batch flipped as `view` says ("" leaves it as it is), contiguous for the runtimes."""
    return batch if not view else np.ascontiguousarray(np.flip(batch, axis=FLIP_AXES[view]))


def with_flips(logits: Callable[[np.ndarray], np.ndarray], views: Sequence[str]) -> Callable[[np.ndarray], np.ndarray]:
    """`logits` (normalised NCHW batch -> logits) averaged over the batch and each flip in `views`."""
    if not views:
        return logits

    def averaged(batch: np.ndarray) -> np.ndarray:
        total = np.asarray(logits(batch), dtype=np.float64)
        for view in views:
            total = total + logits(flipped(batch, view))
        return (total / (len(views) + 1)).astype(np.float32)

    return averaged
