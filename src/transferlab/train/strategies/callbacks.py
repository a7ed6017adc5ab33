"""Lightning callbacks that strategies add to their stage (their own module: Lightning loads when a stage trains,
not when the registry is read)."""

import lightning as L
from torch import nn


class UnfreezeStageByStage(L.Callback):
    """At the start of epoch e (from 0), stages 0..e (parameters of each stage, the top stage first) train; the ones
    below wait."""

    def __init__(self, stages: list[list[nn.Parameter]]):
        self.stages = stages

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for depth, stage in enumerate(self.stages):
            for parameter in stage:
                parameter.requires_grad_(depth <= trainer.current_epoch)
