"""`train(config)`: data -> model -> strategy -> Lightning Trainer -> run directory. Usable from a notebook."""

import functools
import logging
import platform
import signal
import subprocess
import threading
import time
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import timm
import torch
import torchvision
from lightning.pytorch.callbacks import EarlyStopping

from .. import __version__
from ..augment.pipeline import build_augment, resolve_ops
from ..config import RunSettings, TrainConfig
from ..data.datasets import PhotoDataModule
from ..data.resolve import open_data
from ..data.scan import drop_unreadable
from ..data.sources import DataSourceError, DatasetIndex
from ..files import cache_dir, runtimes_dir
from ..models.runtime import feature_runtime, module_runtime
from ..models.split import split_at_first_trainable
from .features import FeatureDataModule, FeatureDataset, FeatureStore, extract_features, store_dir
from ..models.backbones import resolve_backbone
from ..models.classifier import Classifier, build_classifier, data_config
from ..models.freezing import FreezeSummary
from ..models.weights import WeightsError, WeightsInfo
from ..report.plots import history_figure, save_figure
from .distributed import (
    check_devices, is_rank_zero, resolve_workers, threads_per_process, trainer_options, training_device, uses_gpu,
)
from ..models.checkpoints import classifier_state, find_checkpoint, load_checkpoint_classifier, read_checkpoint
from .checkpoints import AtomicCheckpointIO, RunCheckpoints, resume_point
from .module import ClassifierModule, FrozenBatchNormEval
from ..rundir import RunDir, RunDirError
from .strategies import SEED_RECIPE, Strategy, apply_strategy

log = logging.getLogger(__name__)

warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")
warnings.filterwarnings("ignore", message=r".*does not have many workers")  # sized on purpose: distributed.resolve_workers


@dataclass
class StageResult:
    """One trained strategy: its model (best checkpoint loaded), final metrics and freeze summary."""

    strategy: Strategy
    model: Classifier
    metrics: dict[str, Any]
    freeze: FreezeSummary


def resolve_strategy(config: TrainConfig, name: str) -> Strategy:
    """The seed recipe's strategy, with the config's epochs and lr where set (for the strategy asked for)."""
    strategy = SEED_RECIPE[name]
    if name == config.strategy:
        return replace(strategy, epochs=config.epochs or strategy.epochs, lr=config.lr or strategy.lr)
    if name == "frozen" and config.frozen_epochs:
        return replace(strategy, epochs=config.frozen_epochs)
    return strategy


def versions() -> dict[str, str]:
    return {
        "transferlab": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "lightning": L.__version__,
    }


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_run_header(run: RunDir, config: RunSettings, index: DatasetIndex, weights: WeightsInfo) -> None:
    """config.yaml (resolved config, versions, weights, data counts) and classes.json."""
    run.write_config(
        {
            "config": config.model_dump(),
            "augment_ops": resolve_ops(config.augment, config.augment_set),
            "versions": versions(),
            "git_sha": _git_sha(),
            "weights": asdict(weights),
            "data": {
                "root": str(index.root),
                "classes": len(index.classes),
                "train": len(index.train),
                "val": len(index.val),
                "skipped": len(index.skipped),
            },
        }
    )
    run.write_json(
        run.classes_file,
        [
            {"index": i, "folder": folder, "name": name}
            for i, (folder, name) in enumerate(zip(index.classes, index.readable_names))
        ],
    )


def stage_metrics(run: RunDir, strategy: str) -> dict[str, Any]:
    rows = run.read_history(strategy)
    best = max(rows, key=lambda row: row["val_acc"])
    return {
        "val_acc": rows[-1]["val_acc"],
        "val_loss": rows[-1]["val_loss"],
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "epochs": len(rows),
        "seconds": round(sum(row["seconds"] for row in rows), 3),
    }


def fit_stage(
    run: RunDir,
    datamodule: PhotoDataModule | FeatureDataModule,
    model: Classifier,
    strategy: Strategy,
    config: RunSettings,
    classes: tuple[str, ...],
    extra_callbacks: Sequence[L.Callback] = (),
) -> StageResult:
    """Train `model` with `strategy`, record history, checkpoints, metrics and plot; load the best weights back.

    A stage whose metrics are already written is not trained again (its best weights are loaded); one with a
    `last.ckpt` continues from it: same epochs, optimiser state and best-so-far. With `overwrite` rank 0 has
    emptied the run directory, and the other processes of a distributed run must not read what was there.
    """
    freeze = apply_strategy(model, strategy, **config.unfreeze)
    resuming = not config.overwrite
    if resuming and strategy.name in run.read_metrics() and run.best_checkpoint(strategy.name).is_file():
        log.info("%s: already trained in %s; loading its best checkpoint", strategy.name, run.path)
        model.load_state_dict(classifier_state(read_checkpoint(run.best_checkpoint(strategy.name))))
        return StageResult(strategy, model, run.read_metrics()[strategy.name], freeze)
    log.info(
        "%s: %d of %d parameters train, %d BatchNorm frozen",
        strategy.name, freeze.trainable_params, freeze.total_params, freeze.frozen_batchnorms,
    )
    L.seed_everything(config.seed, workers=True, verbose=False)  # each stage draws the same numbers, resumed or not
    module = ClassifierModule(
        model,
        lr=strategy.lr,
        strategy=strategy.name,
        backbone=config.backbone,
        classes=list(classes),
        dropout=config.dropout,
        image_size=datamodule.config.image_size,
    )
    if fast_runtime_applies(config) and strategy.trains in ("head", "head+last") and isinstance(datamodule, PhotoDataModule):
        attach_fast_runtime(module, model, strategy, config, datamodule.config.image_size)
    callbacks: list[L.Callback] = [RunCheckpoints(run, strategy.name), *extra_callbacks]
    if strategy.batchnorm == "frozen":
        callbacks.append(FrozenBatchNormEval())
    if config.early_stop:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=config.early_stop, mode="min"))
    trainer = L.Trainer(
        max_epochs=strategy.epochs,
        **trainer_options(config.accelerator, config.devices, config.num_nodes, config.precision),
        logger=False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        default_root_dir=run.path,
    )
    model.train()  # a previous stage may have left frozen BatchNorm in eval; FrozenBatchNormEval sets it per epoch
    if uses_gpu(config.accelerator):
        torch.set_float32_matmul_precision("high")  # TF32 tensor cores for what runs in float32
    resume = resume_point(run, strategy.name, edit_history=is_rank_zero()) if resuming else None
    if resume:
        log.warning("%s: resuming from %s", strategy.name, resume)
    fit_interruptibly(trainer, module, datamodule, resume)

    model.load_state_dict(classifier_state(read_checkpoint(run.best_checkpoint(strategy.name))))
    model.cpu()
    metrics = stage_metrics(run, strategy.name)
    if hasattr(datamodule, "extraction_seconds"):
        metrics["feature_seconds"] = datamodule.extraction_seconds
    if is_rank_zero():
        run.update_metrics(strategy.name, metrics)
        save_figure(history_figure(run.read_history(strategy.name), strategy.name), run.plot_file(f"history_{strategy.name}"))
    return StageResult(strategy, model, metrics, freeze)


class _SeesInterrupt(L.Callback):
    """Notes a Ctrl-C inside `trainer.fit`, which Lightning turns into `sys.exit(1)`."""

    interrupted = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.interrupted = isinstance(exception, KeyboardInterrupt)


def fit_interruptibly(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, resume: Path | None) -> None:
    """`trainer.fit`, with Ctrl-C raised as `KeyboardInterrupt` (not Lightning's exit code 1) and the Ctrl-C handler
    that Lightning switches off given back, so a notebook or the CLI can say what happened."""
    watch = _SeesInterrupt()
    trainer.callbacks.append(watch)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SystemExit:
        if not watch.interrupted:
            raise
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt from None


def fast_runtime_applies(settings: RunSettings) -> bool:
    """The frozen part runs in OpenVINO / ONNX Runtime on the CPU; on GPUs PyTorch runs all of the model."""
    return settings.runtime != "torch" and not uses_gpu(settings.accelerator)


def attach_fast_runtime(module: ClassifierModule, model: Classifier, strategy: Strategy, settings: RunSettings, image_size: int) -> None:
    """The frozen part of the model runs in the fast runtime: the whole backbone for `frozen` on photos
    (--no-cache), the trunk before the first trainable layer for `finetune`. PyTorch trains the rest."""
    export_dir = runtimes_dir(settings.data_dir)
    threads = threads_per_process(settings.devices)
    if strategy.trains == "head":
        runtime = feature_runtime(model.backbone, image_size, export_dir, settings.runtime, threads)
        rest, what = model.head.forward_pooled, "backbone"
    else:
        split = split_at_first_trainable(model.backbone)
        if split is None:
            return
        runtime = module_runtime(split.trunk, (3, image_size, image_size), export_dir, settings.runtime, threads)
        rest, what = (lambda trunk_output: model.head(split.tail(trunk_output))), f"trunk ({split.trunk_layers} modules)"
    if runtime.name != "torch":
        log.info("%s: the frozen %s runs in %s", strategy.name, what, runtime.name)
        module.use_fast_frozen_part(runtime, rest)


def load_data(settings: RunSettings) -> DatasetIndex:
    """The run's photos: DATA indexed, the chosen breeds kept, unreadable photos dropped (and listed)."""
    index = open_data(settings.data_spec)
    return drop_unreadable(index)


IGNORED_ON_RESUME = {"out", "overwrite", "workers", "runtime", "accelerator", "devices", "num_nodes", "precision"}
"""Settings that may differ when an interrupted run is resumed."""


def open_run(settings: RunSettings, index: DatasetIndex, strategies: Sequence[str]) -> RunDir:
    """The run directory, created (or emptied with `overwrite`), with skipped.csv listing what `index` left out.

    A finished run is refused without `overwrite`; an interrupted one with the same settings is resumed.
    In a distributed run only rank 0 checks and writes; the others use what it prepared.
    """
    run = RunDir(settings.out)
    check_shares(settings, index)
    if not is_rank_zero():
        return run
    if run.config_file.is_file():
        if settings.overwrite:
            run.clear()
        elif run.finished(strategies):
            raise RunDirError(f"{run.path}: a finished run is there; pass --overwrite to replace it, or choose another --out")
        else:
            saved = run.read_config().get("config", {})
            current = settings.model_dump()
            changed = sorted(k for k in current if k not in IGNORED_ON_RESUME and saved.get(k) != current[k])
            if changed:
                raise RunDirError(
                    f"{run.path}: holds an interrupted run with other settings ({', '.join(changed)}); "
                    "run the same command to resume it, or pass --overwrite, or choose another --out"
                )
            log.warning("%s: resuming an interrupted run", run.path)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_skipped(index.skipped)
    return run


def claim_run(settings: RunSettings) -> AbstractContextManager:
    """Rank 0 holds the run directory from the start to the end of the run: a second process is refused, naming the
    first one's PID. The other processes of a distributed run write nothing there. Devices are checked first."""
    check_devices(settings.accelerator, settings.devices)
    return RunDir(settings.out).claimed() if is_rank_zero() else nullcontext()


def check_shares(settings: RunSettings, index: DatasetIndex) -> None:
    """Every process needs training and validation photos of its own."""
    processes = settings.devices * settings.num_nodes
    if processes > 1 and min(len(index.train), len(index.val)) < processes:
        raise DataSourceError(
            f"{index.root}: {len(index.train)} training and {len(index.val)} validation photos cannot be shared "
            f"among {processes} processes (--devices x --num-nodes)"
        )


def make_datamodule(settings: RunSettings, index: DatasetIndex, model: Classifier, image_size: int | None) -> PhotoDataModule:
    return PhotoDataModule(
        index,
        data_config(model.backbone, image_size),
        build_augment(settings.augment, settings.augment_set),
        batch_size=settings.batch_size,
        workers=resolve_workers(settings.workers, settings.accelerator, settings.devices),
        seed=settings.seed,
    )


def feature_datamodule(settings: RunSettings, index: DatasetIndex, model: Classifier, image_size: int | None) -> FeatureDataModule:
    """Cached pooled features of the frozen backbone: clean validation view, clean + `views` augmented training views."""
    config = data_config(model.backbone, image_size)
    augment = build_augment(settings.augment, settings.augment_set)
    views = 1 + (settings.views if augment is not None else 0)
    ops = resolve_ops(settings.augment, settings.augment_set)
    store = FeatureStore(store_dir(cache_dir(settings.data_dir), settings.backbone, model.backbone, config, ops))
    runtime = functools.cache(  # on a GPU, PyTorch there
        lambda: feature_runtime(
            model.backbone, config.image_size, runtimes_dir(settings.data_dir), settings.runtime, threads_per_process(settings.devices),
            training_device(settings.accelerator),
        )
    )
    workers = resolve_workers(settings.workers, settings.accelerator, settings.devices)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # cached or not, training then draws the same random numbers
        train_features = extract_features(index.train, store, runtime, config, augment, views, workers)
        val_features = extract_features(index.val, store, runtime, config, None, 1, workers)
    datamodule = FeatureDataModule(
        FeatureDataset(train_features, [s.label for s in index.train], settings.seed, draw_views=True),
        FeatureDataset(val_features, [s.label for s in index.val], settings.seed, draw_views=False),
        config,
        settings.batch_size,
        settings.seed,
    )
    datamodule.extraction_seconds = round(time.perf_counter() - started, 3)
    return datamodule


def train(config: TrainConfig, callbacks: Sequence[L.Callback] = ()) -> RunDir:
    """Train `config.strategy` on `config.data` into the run directory `config.out`; return it.

    `callbacks` are extra Lightning callbacks added to every stage's Trainer.
    """
    with claim_run(config):
        L.seed_everything(config.seed, workers=True, verbose=False)
        spec = resolve_backbone(config.backbone)
        index = load_data(config)
        first = "frozen" if config.strategy == "finetune" else config.strategy
        stages = [config.strategy] if config.init or config.strategy != "finetune" else ["frozen", "finetune"]
        run = open_run(config, index, stages)
        if config.strategy == "finetune" and config.init:
            model, hparams = load_checkpoint_classifier(config.init)
            if list(hparams["classes"]) != list(index.classes):
                raise WeightsError(f"{config.init}: trained on other classes than {config.data}")
            weights = WeightsInfo("checkpoint", str(find_checkpoint(config.init)))
            image_size = config.image_size or hparams["image_size"]
        else:
            model, weights = build_classifier(
                spec, len(index.classes), SEED_RECIPE[first].pretrained, config.weights, config.dropout
            )
            image_size = config.image_size
        if is_rank_zero():
            write_run_header(run, config, index, weights)
        if first == "frozen" and not config.init and config.cache:
            frozen_data = feature_datamodule(config, index, model, image_size)
        else:
            frozen_data = make_datamodule(config, index, model, image_size)
        if config.strategy == "finetune" and not config.init:
            model = fit_stage(run, frozen_data, model, resolve_strategy(config, "frozen"), config, index.classes, callbacks).model
        datamodule = frozen_data if config.strategy == "frozen" else make_datamodule(config, index, model, image_size)
        fit_stage(run, datamodule, model, resolve_strategy(config, config.strategy), config, index.classes, callbacks)
        return run
