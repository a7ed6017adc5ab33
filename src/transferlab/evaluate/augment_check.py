"""Is each augmentation label-preserving for this data? The trained model's accuracy on validation photos changed
by one op at a time, at its configured strength, against the clean photos.

An op that costs far more accuracy than the others probably changes what a photo shows here (a vertical flip of a
hand sign, a large rotation of a street scene): it is flagged when its drop is at least `FLAG_DROP` and at least
`FLAG_RATIO` times the median drop of the ops checked. Each photo's params are drawn from a generator seeded by
(seed, op, photo), as training draws them, so a check is repeatable.
"""

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..augment.pipeline import OpConfig, build_op, seeded_generator
from ..data.datasets import PhotoDataset, normalize
from ..models.classifier import DataConfig

FLAG_DROP = 0.10
FLAG_RATIO = 3.0


@dataclass(frozen=True)
class OpCheck:
    op: str
    settings: dict[str, Any]
    accuracy: float
    drop: float
    """Clean accuracy minus the accuracy with this op applied to every photo."""
    flagged: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_ops(
    logits: Callable[[np.ndarray], np.ndarray], photos: PhotoDataset, configs: Sequence[OpConfig], seed: int = 0,
    batch_size: int = 64,
) -> tuple[float, list[OpCheck]]:
    """(clean accuracy, one `OpCheck` per op config) of `logits` (normalised batch -> logits) on `photos`."""
    config: DataConfig = photos.config
    to_input = normalize(config)
    images = [photos.load_uint8(i) for i in range(len(photos))]
    labels = np.array([s.label for s in photos.samples])

    def accuracy(change: Callable[[int, torch.Tensor], torch.Tensor]) -> float:
        right = 0
        for start in range(0, len(images), batch_size):
            batch = torch.stack([to_input(change(start + i, image)) for i, image in enumerate(images[start : start + batch_size])])
            right += int((logits(np.ascontiguousarray(batch.numpy())).argmax(axis=1) == labels[start : start + len(batch)]).sum())
        return right / max(1, len(images))

    def with_op(number: int, op_config: OpConfig) -> Callable[[int, torch.Tensor], torch.Tensor]:
        op = build_op(op_config)
        return lambda index, image: op.apply(image, op.sample(image, seeded_generator(seed, number, index)))

    clean = accuracy(lambda index, image: image)
    measured = [(op_config, accuracy(with_op(number, op_config))) for number, op_config in enumerate(configs)]
    drops = [clean - changed for _, changed in measured]
    typical = float(np.median(drops)) if drops else 0.0
    checks = [
        OpCheck(
            op=str(op_config["op"]), settings={k: v for k, v in op_config.items() if k != "op"}, accuracy=changed,
            drop=drop, flagged=drop >= FLAG_DROP - 1e-9 and drop >= FLAG_RATIO * max(typical, 0.0),  # 0.9 - 0.8 is 0.0999...
        )
        for (op_config, changed), drop in zip(measured, drops)
    ]
    return clean, checks


def check_summary(clean: float, checks: Sequence[OpCheck], photos: int) -> list[str]:
    """Lines for the terminal and the report."""
    lines = [f"clean validation photos: accuracy {clean:.1%} on {photos}"]
    for check in checks:
        settings = ", ".join(f"{k}={v}" for k, v in check.settings.items())
        verdict = " — FLAGGED: perhaps not label-preserving for this data" if check.flagged else ""
        lines.append(f"{check.op} ({settings}): {check.accuracy:.1%} ({-check.drop:+.1%}){verdict}")
    return lines
