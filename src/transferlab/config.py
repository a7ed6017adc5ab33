"""Validated configuration of a run; every field names its allowed range."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .augment.presets import PRESETS
from .data.resolve import DataSpec
from .models.backbones import DEFAULT_BACKBONE
from .models.precision import InferencePrecision

Accelerator = Literal["auto", "cpu", "gpu"]
Precision = Literal["auto", "32", "16-mixed", "bf16-mixed"]
RecipeName = Literal["seed", "quick", "auto"]
Schedule = Literal["auto", "constant", "cosine", "onecycle"]
DEFAULT_VIEWS = 2
"""Augmented views per training photo in the feature cache. bench/views.py (woof-bench, frozen, 10 epochs):
validation accuracy 0.935 / 0.924 / 0.925 / 0.921 with K = 1 / 2 / 4 / 8 — no gain past one or two views,
while extraction time grows with K + 1."""

DEFAULT_TRUNK_VIEWS = 2
"""Augmented views per training photo that finetune's epochs cycle through, their frozen-trunk outputs kept.
bench/trunk_views.py (woof-bench and clothing-mini; 4 epochs at 1e-5 and 6 at 1e-4; two seeds): validation accuracy
with K = 1 or 2 within the noise of fresh views every epoch in all eight cases; epochs after the K-th took 4-5 s
against 12-15 s on woof-bench. Two, as the frozen strategy's views: augmentation still varies between epochs."""


class RunSettings(BaseModel):
    """What every run shares: data, model, augmentation, batches, seed. Each field's description is its help in
    the CLI too (`tlab train --help`): this is the one place a setting, its default and its range are written."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description=(
        "A folder of photos (DATA/train/<class>/* + DATA/val/<class>/*, or DATA/<class>/* split by --val-fraction), "
        "a CSV manifest (path,label[,split]), stanford-dogs (downloaded into the cache on first use), or sample "
        "(320 clothing photos in 10 classes shipped with transferlab, CC0: works offline)."
    ))
    breeds: str | None = Field(None, description="Keep the first N classes (e.g. 10), or the named ones (e.g. beagle,Samoyed).")
    data_dir: str | None = Field(None, description="Cache folder for stanford-dogs (default $XDG_CACHE_HOME/transferlab or ~/.cache/transferlab).")
    source_url: str | None = Field(None, description="Mirror URL or local folder holding images.tar and lists.tar (default $TLAB_STANFORD_DOGS_URL, else the official site).")
    out: str = Field(description="Run directory.")
    backbone: str = Field(DEFAULT_BACKBONE, description="efficientnet_lite0 (bundled ImageNet weights), efficientnet_b0 (the notebook's; needs --weights or the hub), or timm:<name>.")
    weights: str | None = Field(None, description="State dict file with pretrained weights for the backbone (.pth/.safetensors).")
    batch_size: int = Field(64, ge=2, le=4096, description="Images per batch (per process when --devices > 1).")
    image_size: int | None = Field(None, ge=32, le=1024, description="Square input size in pixels (default: the backbone's, 224).")
    augment: str | list[dict[str, Any]] = Field("seed-keras", description=(
        "Augmentation of training photos: none, seed-keras (the notebook's rotation, translation, flips, contrast), "
        "seed-all (all eight ops), or a YAML file listing ops."
    ))
    augment_set: list[str] = Field(default_factory=list, description="Override one op setting, op.param=value (repeatable), e.g. rotation.factor=0.2.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed for the split, initialisation, shuffling and augmentation.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of each class held out for validation when DATA has no train/val split.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout rate of the head.")
    unfreeze_layers: int | None = Field(None, ge=0, le=10_000, description="finetune: unfreeze the backbone's last N weight layers instead of blocks (BatchNorm stays frozen).")
    unfreeze_blocks: int | None = Field(None, ge=0, le=1_000, description=(
        "finetune: unfreeze the last K timm blocks (default 1: the last block and the head conv, the notebook's "
        "trainable set); gradual: K stages, one more each epoch (default 3)."
    ))
    balance: Literal["none", "weights", "sampler"] = Field("none", description=(
        "Class imbalance: none; weights (the loss weighs each class by the inverse of its training photos); sampler "
        "(each epoch draws photos with replacement, every class equally often)."
    ))
    schedule: Schedule = Field("auto", description=(
        "Learning rate over each stage's steps: constant; cosine (a linear warmup over the first 10%, then cosine "
        "decay to 0); onecycle (up over 30%, then down); auto: constant in the seed recipe (the notebook's), cosine "
        "in the others and in gradual."
    ))
    early_stop: int | None = Field(None, ge=1, le=10_000, description="Stop when val_loss has not improved for this many epochs.")
    workers: int | None = Field(None, ge=0, le=64, description="DataLoader worker processes (0: decode in the training process; default 0 on CPU, the cores per device on GPUs; a stage whose frozen layers run in OpenVINO/ONNX Runtime loads in the training process's threads).")
    overwrite: bool = Field(False, description="Replace a finished run in the run directory (an interrupted one is resumed without it).")
    cache: bool = Field(True, description="frozen: train the head on cached backbone features (--no-cache: run the backbone on every photo every epoch).")
    views: int = Field(DEFAULT_VIEWS, ge=0, le=64, description="frozen: augmented views per training photo in the feature cache (plus the clean one).")
    trunk_views: int = Field(DEFAULT_TRUNK_VIEWS, ge=0, le=64, description=(
        "finetune, gradual: training epochs cycle through this many augmented views of each photo, whose frozen "
        "layers' outputs are kept in memory, so later epochs run only the layers that train (0: a fresh view every epoch)."
    ))
    runtime: Literal["auto", "openvino", "onnxruntime", "torch"] = Field("auto", description=(
        "Runtime of what needs no gradient (cached features, the frozen trunk, evaluating 500+ photos): auto (the "
        "fastest installed that matches PyTorch), openvino, onnxruntime, torch."
    ))
    inference_precision: InferencePrecision = Field("auto", description=(
        "Precision of what runs without gradients on the CPU (cached features, the frozen trunk, evaluation, predict): "
        "auto (bf16 where the CPU has it natively, else fp32), fp32, bf16 or int8 (NNCF; the int8 extra). A reduced "
        "precision is kept only when the trained classifier's top-1 agrees with fp32 on >= 99% of the validation "
        "photos and its accuracy is within one standard error; else the run uses fp32 and says why."
    ))
    accelerator: Accelerator = Field("auto", description="auto (a GPU when there is one), cpu or gpu.")
    devices: int = Field(1, ge=1, le=1024, description="Training processes per machine (GPUs, or CPU processes); more than one trains with DDP.")
    num_nodes: int = Field(1, ge=1, le=1024, description="Machines (with torchrun or SLURM, or NODE_RANK/MASTER_ADDR set on each).")
    precision: Precision = Field("auto", description=(
        "Training precision: auto (bf16-mixed on a GPU that has it, and on a CPU that computes bf16 natively where a "
        "training step of what trains, timed once, is faster; else 32), 32, 16-mixed (GPU), bf16-mixed."
    ))
    logger: Literal["none", "csv", "tensorboard", "mlflow"] = Field("none", description=(
        "Also send the curves to: csv (RUN/logs/), tensorboard (RUN/logs/; the tensorboard extra) or mlflow "
        "(RUN/mlruns/, a local store, or $MLFLOW_TRACKING_URI; the mlflow extra). history.csv is written either way."
    ))

    @model_validator(mode="after")
    def _augment_builds(self) -> "RunSettings":
        preset = isinstance(self.augment, str) and self.augment in PRESETS
        if not preset or self.augment_set:  # every preset builds (tests/test_augment.py); torch loads only when needed
            from .augment.pipeline import build_augment

            build_augment(self.augment, self.augment_set)
        if self.unfreeze_layers is not None and self.unfreeze_blocks is not None:
            raise ValueError("give --unfreeze-layers or --unfreeze-blocks, not both")
        if self.precision == "16-mixed" and self.accelerator != "gpu":
            from .train.distributed import uses_gpu  # torch loads only for this setting

            if not uses_gpu(self.accelerator):  # Lightning would train in bf16 without a word
                raise ValueError("--precision 16-mixed needs a GPU, and this run would train on the CPU; use bf16-mixed or 32")
        return self

    @property
    def data_spec(self) -> DataSpec:
        return DataSpec(self.data, self.breeds, self.val_fraction, self.seed, self.data_dir, self.source_url)



class TrainConfig(RunSettings):
    """One `tlab train` run: a strategy, and the ones it continues (with their defaults in `recipe`)."""

    strategy: str = Field("frozen", description="The strategy to train (see `tlab strategies`); one that continues another trains that one first.")
    recipe: RecipeName = Field("seed", description=(
        "Default epochs and learning rates: seed (the notebook's), quick (a few epochs each) or auto (fitted to the "
        "data: see tlab compare --help)."
    ))
    epochs: int | None = Field(None, ge=1, le=10_000, description="Epochs of the strategy (default: the recipe's, e.g. seed: frozen 25, finetune 4).")
    lr: Annotated[float, Field(gt=0, le=10)] | Literal["find"] | None = Field(None, description=(
        "Base learning rate (default: the recipe's, e.g. seed: frozen 1e-2, finetune 1e-5), or find: the learning-rate "
        "range test's suggestion (tlab lr-find) for the strategy."
    ))
    init: str | None = Field(None, description="A run directory or checkpoint that a continuing strategy (finetune, gradual) starts from, instead of training frozen first.")
    frozen_epochs: int | None = Field(None, ge=1, le=10_000, description="Epochs of the frozen stage a continuing strategy trains first (default 25).")


class CompareConfig(RunSettings):
    """One `tlab compare` run: several strategies on one split (by default the notebook's scratch, frozen and
    finetune from the frozen model), evaluated and reported."""

    recipe: RecipeName = Field("quick", description=(
        "seed: the notebook's epochs and learning rates (scratch 40, frozen 25, finetune 4); quick: a few epochs "
        "each, for a CPU; auto: fitted to the data — the frozen head's learning rate, weight decay, dropout, label "
        "smoothing and epochs searched on a split of the training photos, then gradual fine-tuning at the range "
        "test's learning rate with early stopping (default strategies frozen,gradual)."
    ))
    epochs: dict[str, int] = Field(default_factory=dict, description="Epochs for every strategy (N) or one (frozen=N); repeatable; overrides the recipe.")
    lr: dict[str, float | Literal["find"]] = Field(default_factory=dict, description=(
        "Learning rate for every strategy or one (finetune=1e-4); find (or frozen=find): the range test's suggestion "
        "(tlab lr-find), its plot in the report; repeatable."
    ))
    strategies: list[str] = Field(
        default_factory=list,
        description=(
            "Comma-separated strategies to train, in order; one that continues another (finetune, gradual: from "
            "frozen) comes after it. Default: scratch,frozen,finetune (the notebook's), or frozen,gradual with --recipe auto."
        ),
    )

    @model_validator(mode="after")
    def _numbers_in_range(self) -> "CompareConfig":
        if not self.strategies:
            self.strategies = ["frozen", "gradual"] if self.recipe == "auto" else ["scratch", "frozen", "finetune"]
        if any(not 1 <= n <= 10_000 for n in self.epochs.values()):
            raise ValueError("epochs must be between 1 and 10000")
        if any(lr != "find" and not 0 < lr <= 10 for lr in self.lr.values()):
            raise ValueError("learning rates must be in (0, 10]")
        return self
