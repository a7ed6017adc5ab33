"""The LightningModule, and the callback that keeps frozen BatchNorm frozen."""

import logging
from typing import Any, Callable

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanMetric, SumMetric

from ..models.freezing import set_frozen_batchnorms_eval
from .strategies.registry import SCHEDULES, adam, single_group

log = logging.getLogger(__name__)


class ClassifierModule(L.LightningModule):
    """Trains a `Classifier` with cross-entropy (weighted per class with `class_weights`, smoothed by
    `label_smoothing`; validation loss never is either) and Adam (AdamW with a `weight_decay`) over the parameters
    that require grad.

    The strategy (which parameters train, BatchNorm policy) is applied to `model` before training; this module
    optimises what it is given, in the strategy's parameter groups (`param_groups(model, lr)`), with the per-step
    schedule named by `schedule` (`strategies.SCHEDULES`).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        strategy: str,
        backbone: str,
        classes: list[str],
        dropout: float,
        image_size: int,
        epochs: int | None = None,
        param_groups: Callable[[nn.Module, float], list[dict]] | None = None,
        schedule: str = "constant",
        class_weights: list[float] | None = None,
        weight_decay: float = 0.0,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.model = model
        self.register_buffer("class_weights", None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32), persistent=False)
        self.lr = lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.strategy = strategy
        self.param_groups = param_groups
        self.schedule = schedule
        self.after_frozen: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.epoch_metrics = nn.ModuleDict(
            {f"{stage}_{name}": MeanMetric() for stage in ("train", "val") for name in ("loss", "acc")}
            | {"val_photos": SumMetric()}
        )
        """Epoch means weighted by photos, summed over every process's shard: exact over the whole set (Lightning's
        own `sync_dist` mean truncates the photo count to an integer mean over processes)."""
        self.save_hyperparameters(ignore=["model", "param_groups"])

    def takes_frozen_outputs(self, after_frozen: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Batches hold the output of the model's frozen layers (run by the loaders, `data.frozen_outputs`), not
        photos: `after_frozen` (the trainable part, in PyTorch) maps them to logits."""
        self.after_frozen = after_frozen

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Photos (N, 3, H, W), cached pooled backbone features (N, D) that only the head sees, or the frozen
        layers' outputs (`takes_frozen_outputs`)."""
        if images.ndim == 2:
            return self.model.head.forward_pooled(images)
        if self.after_frozen is not None:
            return self.after_frozen(images.contiguous(memory_format=torch.channels_last))
        return self.model(images.contiguous(memory_format=torch.channels_last))

    def setup(self, stage: str) -> None:
        """channels_last: convolutions and their gradients about 1.25x faster on this CPU (bench/speed.py). Set
        before DDP wraps the model, so its gradient buckets take the same strides."""
        self.model.to(memory_format=torch.channels_last)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        training = stage == "train"
        weights = self.class_weights if training and self.class_weights is not None else None
        loss = F.cross_entropy(
            logits, labels, weight=None if weights is None else weights.to(logits.dtype), label_smoothing=self.label_smoothing if training else 0.0,
        )
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        photos = labels.numel()
        for name, value in (("loss", loss), ("acc", accuracy)):
            metric = self.epoch_metrics[f"{stage}_{name}"]
            metric.update(value.detach().float(), weight=photos)
            self.log(f"{stage}_{name}", metric, on_step=False, on_epoch=True, prog_bar=True)
        if stage == "val":
            self.epoch_metrics["val_photos"].update(photos)
            self.log("val_photos", self.epoch_metrics["val_photos"], on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        groups = (self.param_groups or single_group)(self.model, self.lr)
        trainable = sum(p.numel() for group in groups for p in group["params"])
        log.info("%s: %d trainable of %d parameters", self.strategy, trainable, sum(p.numel() for p in self.model.parameters()))
        optimizer = adam(groups, self.lr, self.weight_decay)
        scheduler = SCHEDULES[self.schedule](optimizer, int(self.trainer.estimated_stepping_batches))
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class FrozenBatchNormEval(L.Callback):
    """Keeps frozen BatchNorm in eval mode in every training step, as Keras does for a frozen layer.

    Lightning (>= 2.2) restores each submodule's mode after validation, so setting it at each
    training epoch start holds for the whole epoch.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        set_frozen_batchnorms_eval(pl_module)
