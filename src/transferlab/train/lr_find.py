"""The learning-rate range test (Smith, 2017): train from a small rate, multiplying it every step, until the loss
blows up; Lightning's `Tuner.lr_find` runs the ramp and smooths the loss.

The suggestion is the middle, in log rate, of the longest stretch over which the smoothed loss keeps falling (the
idea of fastai's "valley" rule): a property of the whole descent, so it does not jump with the noise of single
points as the steepest slope (Lightning's suggestion) does, and it sits well below where the loss turns up. The
older "a tenth of the minimum" rule was measured too: on woof-mini's frozen features it suggested 2.2e-2, where a
grid of rates trained for 5 epochs had its lowest validation loss at 3e-3 and 3e-2 overfit badly (validation loss
0.37 against 1.58); the valley rule suggests 2.3e-3 there (3.5e-3 on clothing-mini, whose best grid rate is 3e-3 too).
"""

import logging
import math
from dataclasses import asdict, dataclass

import lightning as L
import numpy as np
from matplotlib.figure import Figure

from .quiet import quiet_lightning, quiet_warnings

log = logging.getLogger(__name__)

MIN_LR, MAX_LR, STEPS = 1e-6, 1.0, 100


@dataclass(frozen=True)
class LrFinding:
    """The ramp's rates and smoothed losses, and the suggested rate."""

    strategy: str
    lrs: list[float]
    losses: list[float]
    suggestion: float
    rule: str = "the middle of the longest stretch of falling loss"

    def as_dict(self) -> dict:
        return asdict(self)

    def figure(self) -> Figure:
        figure = Figure(figsize=(7, 4.2), layout="constrained")
        ax = figure.subplots()
        ax.plot(self.lrs, self.losses, color="#4c72b0")
        ax.axvline(self.suggestion, color="#dd8452", linestyle="--", label=f"suggested: {self.suggestion:.2g} ({self.rule})")
        ax.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)", title=f"{self.strategy}: learning-rate range test")
        finite = [loss for loss in self.losses if math.isfinite(loss)]
        if finite:
            ax.set_ylim(min(finite) - 0.05 * abs(min(finite)), min(max(finite), 3 * finite[0]) * 1.05)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="upper left", fontsize=8)
        return figure


def suggest(lrs: list[float], losses: list[float]) -> float:
    """The rate in the middle (in steps) between the first and last point of the longest falling stretch of the
    smoothed loss: the longest run of points, each lower than the one before it in the run (not necessarily adjacent,
    so a noisy bump does not end it), found by dynamic programming."""
    values = np.array(losses, dtype=float)
    usable = np.flatnonzero(np.isfinite(values))
    if len(usable) < 2:
        return float(lrs[0])
    values = values[usable]
    longest = np.ones(len(values), dtype=int)
    first = np.arange(len(values))  # where the longest run ending at each point starts
    for i in range(1, len(values)):
        higher_before = np.flatnonzero(values[:i] > values[i])
        if len(higher_before):
            previous = higher_before[::-1][np.argmax(longest[higher_before][::-1])]  # ties: the nearest, so a plateau before the descent is not part of it
            longest[i], first[i] = longest[previous] + 1, first[previous]
    end = int(np.argmax(longest))
    return float(lrs[int(usable[(first[end] + end) // 2])])


def range_test(
    module: L.LightningModule, datamodule: L.LightningDataModule, strategy: str, trainer_options: dict,
    min_lr: float = MIN_LR, max_lr: float = MAX_LR, steps: int = STEPS, root: str | None = None,
) -> LrFinding:
    """Run the ramp on `module` (its weights are put back afterwards) over `datamodule`'s training batches; Lightning
    keeps its temporary checkpoint in `root` (default: the working directory)."""
    from lightning.pytorch.tuner import Tuner

    batches = len(datamodule.train_dataloader())
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=math.ceil(steps / max(1, batches)) + 1, logger=False, enable_checkpointing=False, enable_model_summary=False,
            enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=root, **trainer_options,
        )
    with quiet_warnings(".*(LR finder|lr_find|restoring|Restoring).*"), quiet_lightning():
        finder = Tuner(trainer).lr_find(
            module, datamodule=datamodule, min_lr=min_lr, max_lr=max_lr, num_training=steps, mode="exponential",
            early_stop_threshold=4.0, update_attr=False,
        )
    lrs, losses = [float(v) for v in finder.results["lr"]], [float(v) for v in finder.results["loss"]]
    finding = LrFinding(strategy, lrs, losses, suggest(lrs, losses))
    log.info("%s: learning rate %.2g suggested (%s)", strategy, finding.suggestion, finding.rule)
    return finding
