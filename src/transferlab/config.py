"""Validated configuration of a run; every field names its allowed range."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .augment.pipeline import build_augment
from .data.resolve import DataSpec
from .models.backbones import DEFAULT_BACKBONE
from .train.strategies import StrategyName

Accelerator = Literal["auto", "cpu", "gpu"]
Precision = Literal["auto", "32", "16-mixed", "bf16-mixed"]
RecipeName = Literal["seed", "quick"]
DEFAULT_VIEWS = 2
"""Augmented views per training photo in the feature cache. bench/views.py (woof-bench, frozen, 10 epochs):
validation accuracy 0.935 / 0.924 / 0.925 / 0.921 with K = 1 / 2 / 4 / 8 — no gain past one or two views,
while extraction time grows with K + 1."""


class RunSettings(BaseModel):
    """What every run shares: data, model, augmentation, batches, seed."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="a folder of photos (DATA/train/<class>, DATA/val/<class>, or DATA/<class>), a CSV manifest, or stanford-dogs")
    breeds: str | None = Field(None, description="the first N classes, or a comma-separated list of them")
    data_dir: str | None = Field(None, description="cache folder for downloaded datasets")
    source_url: str | None = Field(None, description="mirror URL or local folder holding the Stanford Dogs archives")
    out: str = Field(description="run directory")
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = Field(None, description="state dict file with pretrained backbone weights")
    batch_size: int = Field(64, ge=2, le=4096)
    image_size: int | None = Field(None, ge=32, le=1024)
    augment: str | list[dict[str, Any]] = Field(
        "seed-keras", description="preset (none, seed-keras, seed-all), a YAML file of ops, or a list of ops"
    )
    augment_set: list[str] = Field(default_factory=list, description="op.param=value overrides")
    seed: int = Field(42, ge=0, le=2**32 - 1)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    unfreeze_layers: int | None = Field(None, ge=0, le=10_000, description="finetune: the backbone's last N weight layers")
    unfreeze_blocks: int | None = Field(
        None, ge=0, le=1_000, description="finetune: the last K timm blocks (default 1 when neither is set)"
    )
    early_stop: int | None = Field(None, ge=1, le=10_000, description="patience in epochs on val_loss")
    workers: int | None = Field(None, ge=0, le=64, description="DataLoader workers (default: 0 on CPU, the cores per device on GPUs)")
    overwrite: bool = Field(False, description="replace a finished run in the run directory")
    cache: bool = Field(True, description="frozen strategy: train the head on cached backbone features")
    views: int = Field(DEFAULT_VIEWS, ge=0, le=64, description="augmented views per training photo in the feature cache")
    runtime: Literal["auto", "openvino", "onnxruntime", "torch"] = Field(
        "auto", description="backbone runtime for feature extraction"
    )
    accelerator: Accelerator = Field("auto", description="auto (a GPU when there is one), cpu or gpu")
    devices: int = Field(1, ge=1, le=1024, description="processes per node (GPUs, or CPU processes)")
    num_nodes: int = Field(1, ge=1, le=1024, description="machines")
    precision: Precision = Field("auto", description="auto (bf16-mixed on a GPU that has it, else 32), 32, 16-mixed, bf16-mixed")

    @model_validator(mode="after")
    def _augment_builds(self) -> "RunSettings":
        build_augment(self.augment, self.augment_set)
        if self.unfreeze_layers is not None and self.unfreeze_blocks is not None:
            raise ValueError("give --unfreeze-layers or --unfreeze-blocks, not both")
        if self.accelerator == "cpu" and self.precision == "16-mixed":
            raise ValueError("--precision 16-mixed needs a GPU; on CPU use bf16-mixed or 32")
        return self

    @property
    def data_spec(self) -> DataSpec:
        return DataSpec(self.data, self.breeds, self.val_fraction, self.seed, self.data_dir, self.source_url)

    @property
    def unfreeze(self) -> dict[str, int | None]:
        """What finetune unfreezes: N weight layers, or K blocks — by default the notebook's set, the last block
        and the head conv (its last 20 Keras layers are block7a and top_conv: 1.1 M parameters in B0)."""
        if self.unfreeze_layers is not None:
            return {"unfreeze_layers": self.unfreeze_layers, "unfreeze_blocks": None}
        return {"unfreeze_layers": 0, "unfreeze_blocks": 1 if self.unfreeze_blocks is None else self.unfreeze_blocks}


class TrainConfig(RunSettings):
    """One `tlab train` run. Unset epochs/lr come from the seed recipe (DESIGN.md) for the strategy."""

    strategy: StrategyName = "frozen"
    epochs: int | None = Field(None, ge=1, le=10_000)
    lr: float | None = Field(None, gt=0, le=10)
    init: str | None = Field(None, description="frozen run directory or checkpoint that finetune starts from")
    frozen_epochs: int | None = Field(None, ge=1, le=10_000, description="epochs of finetune's frozen stage")


class CompareConfig(RunSettings):
    """One `tlab compare` run: scratch, frozen and finetune (from the frozen model) on one split."""

    recipe: RecipeName = "quick"
    epochs: dict[StrategyName, int] = Field(default_factory=dict, description="epochs per strategy, over the recipe's")
    lr: dict[StrategyName, float] = Field(default_factory=dict, description="learning rate per strategy, over the recipe's")
    strategies: list[StrategyName] = Field(default_factory=lambda: ["scratch", "frozen", "finetune"])

    @model_validator(mode="after")
    def _finetune_needs_frozen(self) -> "CompareConfig":
        if "finetune" in self.strategies and "frozen" not in self.strategies:
            raise ValueError("finetune continues from the frozen model: keep frozen in --strategies")
        if any(not 1 <= n <= 10_000 for n in self.epochs.values()):
            raise ValueError("epochs must be between 1 and 10000")
        if any(not 0 < lr <= 10 for lr in self.lr.values()):
            raise ValueError("learning rates must be in (0, 10]")
        return self
