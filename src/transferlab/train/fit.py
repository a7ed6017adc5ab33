"""One strategy's stage: model → Lightning Trainer → the run directory's history, checkpoints and metrics; and
what a stage needs (data, run directory). `transferlab.experiment` orchestrates stages."""

import functools
import importlib.util
import logging
import os
import platform
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import timm
import torch
import torchvision
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping

from .. import __version__
from ..augment.pipeline import build_augment, resolve_ops
from ..config import RunSettings
from ..data.datasets import PhotoDataModule, PhotoDataset, balanced_weights
from ..data.decoded import DecodedStore
from ..data.frozen_outputs import FrozenPart, OutputCache
from ..data.photo_cache import PhotoCache
from ..data.sources import DataSourceError, DatasetIndex, Sample
from ..files import cache_dir, runtimes_dir
from ..models.checkpoints import classifier_state, read_checkpoint
from ..models.classifier import Classifier, DataConfig, data_config
from ..models.devices import default_threads
from ..models.freezing import FreezeSummary
from ..models.precision import CALIBRATION_PHOTOS, candidate_precision, cpu_model, gate_sample, isa_cap, speed_flags
from ..models.runtime import FeatureRuntime, feature_runtime, module_runtime
from ..models.split import split_at_first_trainable
from ..models.weights import WeightsInfo
from ..report.plots import history_figure, save_figure
from ..rundir import RunDir, RunDirError
from .checkpoints import AtomicCheckpointIO, RunCheckpoints, resume_point
from .bf16_probe import Bf16Probe
from .distributed import is_rank_zero, resolve_precision, resolve_workers, threads_per_process, trainer_options, training_device, uses_gpu
from .feature_store import FeatureStore, remember_store, store_dir
from .features import FeatureDataModule, FeatureDataset, extract_features
from .module import ClassifierModule, FrozenBatchNormEval
from .quiet import quiet_lightning, quiet_warnings
from .strategies import Stage, Unfreeze

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    """One trained strategy: its stage, its model (best checkpoint loaded), final metrics and freeze summary."""

    stage: Stage
    model: Classifier
    metrics: dict[str, Any]
    freeze: FreezeSummary
    image_size: int
    cached_features: bool = False
    """Trained on the cached pooled features of the pretrained backbone (its head can be evaluated on them)."""
    trained_precision: str = "fp32"
    """The inference precision its frozen part (cached features, the trunk) ran in while it trained."""
    precision_refused: str | None = None
    """Why the cached features are fp32 when the run asked for a reduced precision (the runtime's reason)."""


def versions() -> dict[str, str]:
    return {
        "transferlab": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "lightning": L.__version__,
    }


def machine(settings: RunSettings) -> dict[str, Any]:
    """What a run's seconds and precisions depend on: the CPU (model, cores, extensions where known, oneDNN's cap)
    and the GPUs it trains on, if any (a resumed run records the machine it resumed on)."""
    gpus = settings.devices if uses_gpu(settings.accelerator) and torch.cuda.is_available() else 0
    gpu = torch.cuda.get_device_name(0) if gpus else None
    return {
        "cpu": cpu_model(),
        "cores": default_threads(),
        "extensions": speed_flags(),
        "isa_cap": isa_cap(),
        "gpu": f"{gpus} x {gpu}" if gpus > 1 else gpu,
    }


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


STAGE_RECORDS = ("inference_precision_used",)
"""config.yaml's sections that stages write after the header."""


def write_run_header(run: RunDir, config: RunSettings, index: DatasetIndex, weights: WeightsInfo, keep: dict | None = None) -> None:
    """config.yaml (resolved config, versions, weights, data counts) and classes.json. `keep`: settings already
    recorded that `config` does not hold (a CLI command's strategy or recipe, when a notebook continues its run).
    What the stages recorded there (the inference precision each kept) stays."""
    recorded = {key: value for key, value in (run.read_config() if run.config_file.is_file() else {}).items() if key in STAGE_RECORDS}
    run.write_config(
        {
            "config": {**(keep or {}), **config.model_dump()},
            "augment_ops": resolve_ops(config.augment, config.augment_set),
            "versions": versions(),
            "machine": machine(config),
            "git_sha": _git_sha(),
            "weights": asdict(weights),
            "data": {
                "root": str(index.root),
                "classes": len(index.classes),
                "train": len(index.train),
                "val": len(index.val),
                "skipped": len(index.skipped),
            },
            **recorded,
        }
    )
    train_counts, val_counts = index.counts("train"), index.counts("val")
    run.write_json(
        run.classes_file,
        [
            {"index": i, "folder": folder, "name": name, "train": train_counts[folder], "val": val_counts[folder]}
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
    stage: Stage,
    settings: RunSettings,
    classes: Sequence[str],
    extra_callbacks: Sequence[L.Callback] = (),
    keep_finished: bool = True,
) -> StageResult:
    """Train `model` as `stage` says; record history, checkpoints, metrics and plot; load the best weights back.

    A stage whose metrics are written is loaded from its best checkpoint with `keep_finished`, else trained again
    (its earlier results replaced). One that was interrupted continues from its checkpoint (same epochs, optimiser
    state, best so far and random numbers), unless it ran with another learning rate or epoch count: then it
    starts over. With `overwrite` rank 0 has emptied the run directory; the other processes must not read it.
    """
    name, strategy = stage.name, stage.strategy
    unfreeze = Unfreeze(settings.unfreeze_layers, settings.unfreeze_blocks)
    freeze = strategy.apply(model, unfreeze)
    cached_features = isinstance(datamodule, FeatureDataModule)
    frozen_precision = datamodule.precision if cached_features else "fp32"
    refused = datamodule.precision_refused if cached_features else None
    finished = name in run.read_metrics() and run.best_checkpoint(name).is_file()
    if finished and keep_finished and not settings.overwrite:
        log.info("%s: already trained in %s; loading its best checkpoint", name, run.path)
        model.load_state_dict(classifier_state(read_checkpoint(run.best_checkpoint(name))))
        return StageResult(stage, model, run.read_metrics()[name], freeze, datamodule.config.image_size, cached_features, frozen_precision, refused)
    if (finished or settings.overwrite) and is_rank_zero():
        if finished:
            log.warning("%s: training it again; its earlier results in %s are replaced", name, run.path)
        run.forget_stage(name)
    log.info("%s: %d of %d parameters train, %d BatchNorm frozen", name, freeze.trainable_params, freeze.total_params, freeze.frozen_batchnorms)
    L.seed_everything(settings.seed, workers=True, verbose=False)  # each stage draws the same numbers, resumed or not
    module, runtime_precision = training_module(model, stage, settings, classes, datamodule)
    frozen_precision = runtime_precision or frozen_precision
    part = datamodule.frozen_part if isinstance(datamodule, PhotoDataModule) else None
    cycled_views = part.views if part and datamodule.train_set.augment else 0
    probe = bf16_probe(settings, model, module, datamodule.config.image_size)
    callbacks: list[L.Callback] = [RunCheckpoints(run, name), *strategy.callbacks(model, unfreeze), *extra_callbacks]
    if strategy.batchnorm == "frozen":
        callbacks.append(FrozenBatchNormEval())
    patience = settings.early_stop or stage.patience  # the user's --early-stop wins over the recipe's
    if patience:  # checked when validation ends, so that epoch's check is in its last.ckpt
        callbacks.append(EarlyStopping(monitor="val_loss", patience=patience, mode="min", check_on_train_epoch_end=False))
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=stage.epochs,
            **trainer_options(
                settings.accelerator, settings.devices, settings.num_nodes, settings.precision, strategy.unfreezes_during_training,
                bf16_pays=probe,
            ),
            logger=experiment_logger(settings.logger, run, name),
            log_every_n_steps=1,
            callbacks=callbacks,
            plugins=[AtomicCheckpointIO()],
            enable_checkpointing=False,
            num_sanity_val_steps=0,
            enable_model_summary=False,
            default_root_dir=run.path,
        )
    model.train()  # a previous stage may have left frozen BatchNorm in eval; FrozenBatchNormEval sets it per epoch
    if uses_gpu(settings.accelerator):
        torch.set_float32_matmul_precision("high")  # TF32 tensor cores for what runs in float32
    resume = resume_point(run, name, stage.lr, stage.epochs, edit_history=is_rank_zero()) if not settings.overwrite else None
    if resume:
        log.warning("%s: resuming from %s", name, resume)
    fit_interruptibly(trainer, module, datamodule, resume)

    model.load_state_dict(classifier_state(read_checkpoint(run.best_checkpoint(name))))
    model.cpu()
    metrics = stage_metrics(run, name)
    if hasattr(datamodule, "extraction_seconds"):
        metrics["feature_seconds"] = datamodule.extraction_seconds
    metrics["training_precision"] = trainer.precision
    if probe.speedup is not None:
        metrics["bf16_training_speedup"] = probe.speedup  # the timing `auto` chose the precision by, on this CPU
    metrics["schedule"] = stage.schedule
    if cycled_views:
        metrics["trunk_views"] = cycled_views
    if is_rank_zero():
        run.update_metrics(name, metrics)
        save_figure(history_figure(run.read_history(name), name), run.plot_file(f"history_{name}"))
    return StageResult(stage, model, metrics, freeze, datamodule.config.image_size, cached_features, frozen_precision, refused)


def stage_module(
    model: Classifier, stage: Stage, settings: RunSettings, classes: Sequence[str], datamodule: "PhotoDataModule | FeatureDataModule",
) -> ClassifierModule:
    """The LightningModule that trains `model` (the stage's strategy already applied to it) as `stage` says; the
    head's dropout is set to the stage's."""
    if stage.dropout is not None:
        model.head.dropout.p = stage.dropout
    return ClassifierModule(
        model,
        lr=stage.lr,
        epochs=stage.epochs,
        strategy=stage.name,
        backbone=settings.backbone,
        classes=list(classes),
        dropout=model.head.dropout.p,  # the stage's, or the rate of the model it continues
        image_size=datamodule.config.image_size,
        param_groups=stage.strategy.param_groups,
        schedule=stage.schedule,
        class_weights=loss_weights(settings, datamodule, len(classes)),
        weight_decay=stage.weight_decay,
        label_smoothing=stage.label_smoothing,
    )


def training_module(
    model: Classifier, stage: Stage, settings: RunSettings, classes: Sequence[str], datamodule: "PhotoDataModule | FeatureDataModule",
) -> tuple[ClassifierModule, str | None]:
    """`stage_module`, its frozen part running in the fast runtime where that applies (photos, something frozen, the
    CPU); the precision that part runs in, or None where PyTorch runs all of it."""
    module = stage_module(model, stage, settings, classes, datamodule)
    if isinstance(datamodule, PhotoDataModule):
        datamodule.release_frozen_part()  # another fit's, if it ended without its teardown
        if fast_runtime_applies(settings) and stage.strategy.trains != "all":
            return module, attach_fast_runtime(module, model, stage, settings, datamodule)
    return module, None


def bf16_probe(settings: RunSettings, model: Classifier, module: ClassifierModule, image_size: int) -> Bf16Probe:
    """Whether bf16 autocast pays for training `model` as frozen now through `module` (its frozen trunk in a fast
    runtime, or all of it in PyTorch), asked only where the precision is `auto` on a CPU with native bf16."""
    return Bf16Probe(model, image_size, settings.batch_size, settings.data_dir, whole_model=module.after_frozen is None)


class _SeesInterrupt(L.Callback):
    """Notes a Ctrl-C inside `trainer.fit`, which Lightning turns into `sys.exit(1)`; and makes it stick: Python drops
    a KeyboardInterrupt raised while a `__del__` or GC callback runs ("Exception ignored in ..."), so a Ctrl-C seen
    by `on_sigint` is raised again at the next batch boundary."""

    interrupted = False
    requested = False

    def on_sigint(self, signum: int, frame: Any) -> None:
        self.requested = True
        raise KeyboardInterrupt

    def _raise_if_requested(self, *args: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt

    on_train_batch_end = on_validation_batch_end = on_train_epoch_end = on_validation_epoch_end = _raise_if_requested

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.interrupted = isinstance(exception, KeyboardInterrupt)


def fit_interruptibly(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, resume: Path | None) -> None:
    """`trainer.fit`, with Ctrl-C raised as `KeyboardInterrupt` (not Lightning's exit code 1) and the Ctrl-C handler
    that Lightning switches off given back, so a notebook or the CLI can say what happened."""
    watch = _SeesInterrupt()
    trainer.callbacks.append(watch)
    handles = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    previous = signal.signal(signal.SIGINT, watch.on_sigint) if handles else None
    try:
        with quiet_warnings(), quiet_lightning():
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        if watch.requested:  # dropped after the last hook (a checkpoint written, teardown)
            raise KeyboardInterrupt
    except SystemExit:
        if not watch.interrupted:
            raise
        raise KeyboardInterrupt from None
    finally:
        if handles:  # Lightning leaves Ctrl-C ignored after one
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


LOGGER_EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


def experiment_logger(kind: str, run: RunDir, strategy: str) -> Any:
    """Lightning's logger for `kind` (one run per strategy), writing under the run directory; False for none."""
    if kind == "none":
        return False
    from lightning.pytorch import loggers

    try:
        if kind == "csv":
            return loggers.CSVLogger(run.path / "logs", name=strategy)
        if kind == "tensorboard":
            return loggers.TensorBoardLogger(run.path / "logs", name=strategy, default_hp_metric=False)
        if "MLFLOW_TRACKING_URI" in os.environ:  # the user's own tracking server
            return loggers.MLFlowLogger(experiment_name=run.path.name, run_name=strategy, tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 prefers a database; a local store needs no server
        return loggers.MLFlowLogger(experiment_name=run.path.name, run_name=strategy, tracking_uri=(run.path / "mlruns").resolve().as_uri())
    except ModuleNotFoundError:
        raise MisconfigurationException(f"--logger {kind} needs the {kind} extra: pip install 'transferlab[{LOGGER_EXTRAS[kind]}]'") from None


def fast_runtime_applies(settings: RunSettings) -> bool:
    """The frozen part runs in OpenVINO / ONNX Runtime on the CPU; on GPUs PyTorch runs all of the model."""
    return settings.runtime != "torch" and not uses_gpu(settings.accelerator)


def run_precision(settings: RunSettings) -> str:
    """The inference precision a run tries for what runs without gradients: `--inference-precision` (auto: see
    `models.precision`), or fp32 where PyTorch runs it (a GPU, --runtime torch or onnxruntime), where OpenVINO is
    not installed, and in a distributed run (every process would have to agree on the gate's outcome)."""
    if not fast_runtime_applies(settings) or settings.runtime == "onnxruntime" or settings.devices * settings.num_nodes > 1:
        return "fp32"
    if importlib.util.find_spec("openvino") is None:
        return "fp32"
    return candidate_precision(settings.inference_precision)


def calibration_photos(samples: Sequence[Sample], config: DataConfig, seed: int) -> Callable[[], list[np.ndarray]]:
    """For int8: normalised clean views of up to `CALIBRATION_PHOTOS` training photos, in batches (decoded when asked)."""

    def batches() -> list[np.ndarray]:
        chosen = [samples[i] for i in gate_sample(len(samples), seed)[:CALIBRATION_PHOTOS]]
        dataset = PhotoDataset(chosen, config)
        images = [dataset[i][0] for i in range(len(dataset))]
        return [torch.stack(images[i : i + 32]).numpy() for i in range(0, len(images), 32)]

    return batches


def attach_fast_runtime(
    module: ClassifierModule, model: Classifier, stage: Stage, settings: RunSettings, datamodule: PhotoDataModule,
) -> str:
    """The frozen part of the model runs in the fast runtime, in the loaders (`data.frozen_outputs`): the whole
    backbone when only the head trains (frozen on photos, --no-cache), else the trunk before the first layer that
    trains in the stage, whose training epochs cycle through `--trunk-views` views. PyTorch trains the rest. Returns
    the precision the frozen part runs in."""
    export_dir = runtimes_dir(settings.data_dir)
    threads = threads_per_process(settings.devices)
    precision = run_precision(settings)
    image_size = datamodule.config.image_size
    train = datamodule.index.train
    calibration = calibration_photos(train, data_config(model.backbone, image_size), settings.seed) if train else None
    if stage.strategy.trains == "head":
        runtime = feature_runtime(model.backbone, image_size, export_dir, settings.runtime, threads, precision=precision, calibration=calibration)
        what, views, after_frozen = "backbone", 0, None  # pooled features: the module's head takes them as they are
    else:
        split = split_at_first_trainable(model.backbone)
        if split is None:
            return "fp32"
        runtime = module_runtime(split.trunk, (3, image_size, image_size), export_dir, settings.runtime, threads, precision=precision, calibration=calibration)
        what, views = f"trunk ({split.trunk_layers} modules)", settings.trunk_views

        def after_frozen(trunk_output: torch.Tensor) -> torch.Tensor:
            return model.head(split.tail(trunk_output))
    if runtime.name == "torch":
        return "fp32"
    if after_frozen is not None:
        module.takes_frozen_outputs(after_frozen)
    log.info("%s: the frozen %s runs in %s (%s)%s", stage.name, what, runtime.name, runtime.precision,
             f"; training epochs cycle through {views} views of each photo" if views else "")
    if datamodule.workers:
        log.info("%s: photos load in this process's threads, where the frozen %s runs (--workers %d is for the other stages)",
                 stage.name, what, datamodule.workers)
    processes = settings.devices * settings.num_nodes
    trains_in_bf16 = resolve_precision(settings.precision, settings.accelerator, bf16_probe(settings, model, module, image_size), processes) == "bf16-mixed"
    cache = OutputCache(processes=settings.devices, dtype=torch.bfloat16 if trains_in_bf16 else None, folder=cache_dir(settings.data_dir) / "frozen-outputs")
    datamodule.frozen_part = FrozenPart(runtime, views, stage.epochs, cache)
    return runtime.precision


IGNORED_ON_RESUME = {
    "out", "overwrite", "workers", "runtime", "inference_precision", "accelerator", "devices", "num_nodes", "precision", "logger",
}
"""Settings that may differ when an interrupted run is resumed."""


def prepare_run(settings: RunSettings, index: DatasetIndex, refuse_finished: Sequence[str] | None = None) -> RunDir:
    """The run directory, created (or emptied with `overwrite`), with skipped.csv listing what `index` left out.

    A directory holding a run with other settings is refused without `overwrite`; so is a finished one when the
    stages of `refuse_finished` are all done there (the CLI: rerunning a finished command needs --overwrite). An
    interrupted run with the same settings goes on. In a distributed run only rank 0 checks and writes.
    """
    run = RunDir(settings.out)
    check_shares(settings, index)
    if not is_rank_zero():
        return run
    if run.config_file.is_file():
        if settings.overwrite:
            run.clear()
        elif refuse_finished is not None and run.finished(refuse_finished):
            raise RunDirError(f"{run.path}: a finished run is there; pass --overwrite to replace it, or choose another --out")
        else:
            saved = run.read_config()["config"]
            current = settings.model_dump()
            changed = sorted(k for k in current if k not in IGNORED_ON_RESUME and saved_setting(saved, k, settings) != current[k])
            if changed:
                raise RunDirError(
                    f"{run.path}: holds a run with other settings ({', '.join(changed)}); run the same command to "
                    "resume it, or pass --overwrite (overwrite=True), or choose another --out"
                )
            if refuse_finished is not None:
                log.warning("%s: resuming an interrupted run", run.path)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_skipped(index.skipped)
    return run


def saved_setting(saved: dict[str, Any], key: str, settings: RunSettings) -> Any:
    """What the run in a directory used for setting `key`: its config's, or for a run from before the setting
    existed, what the code did then — constant rates for `schedule` (the quick recipe now warms up and decays), the
    setting's default otherwise."""
    if key in saved:
        return saved[key]
    if key == "schedule" and saved.get("recipe", "seed") != "seed":
        return "constant"
    if key == "trunk_views":
        return 0  # a fresh view every epoch
    return type(settings).model_fields[key].get_default(call_default_factory=True)


def check_shares(settings: RunSettings, index: DatasetIndex) -> None:
    """Every process needs training and validation photos of its own."""
    processes = settings.devices * settings.num_nodes
    if processes > 1 and min(len(index.train), len(index.val)) < processes:
        raise DataSourceError(
            f"{index.root}: {len(index.train)} training and {len(index.val)} validation photos cannot be shared "
            f"among {processes} processes (--devices x --num-nodes)"
        )


def make_datamodule(settings: RunSettings, index: DatasetIndex, model: Classifier, image_size: int | None) -> PhotoDataModule:
    """Photos for `model`'s backbone, each decoded once (`data.decoded`), augmented afresh every epoch."""
    config = data_config(model.backbone, image_size)
    return PhotoDataModule(
        index,
        config,
        build_augment(settings.augment, settings.augment_set),
        batch_size=settings.batch_size,
        workers=resolve_workers(settings.workers, settings.accelerator, settings.devices),
        seed=settings.seed,
        decoded=DecodedStore.for_config(config, settings.data_dir),
        photos=PhotoCache.in_cache(settings.data_dir),
        sample_weights=sampler_weights(settings, index),
    )


def sampler_weights(settings: RunSettings, index: DatasetIndex) -> list[float] | None:
    """Per training photo, for `--balance sampler`; None otherwise."""
    if settings.balance != "sampler":
        return None
    return balanced_weights([s.label for s in index.train], len(index.classes))[1]


def loss_weights(settings: RunSettings, datamodule: "PhotoDataModule | FeatureDataModule", classes: int) -> list[float] | None:
    """Per class, for `--balance weights`; None otherwise."""
    if settings.balance != "weights":
        return None
    if isinstance(datamodule, PhotoDataModule):
        labels = [s.label for s in datamodule.index.train]
    else:
        labels = [int(label) for label in datamodule.train_set.labels]
    return balanced_weights(labels, classes)[0]


def feature_datamodule(
    settings: RunSettings, index: DatasetIndex, model: Classifier, image_size: int | None, precision: str | None = None
) -> FeatureDataModule:
    """Cached pooled features of the frozen backbone: clean validation view, clean + `views` augmented training views,
    computed in `precision` (default: `run_precision`)."""
    precision = precision or run_precision(settings)
    config = data_config(model.backbone, image_size)
    augment = build_augment(settings.augment, settings.augment_set)
    views = 1 + (settings.views if augment is not None else 0)
    store = feature_store(settings, model, config, precision)
    runtime = functools.cache(  # on a GPU, PyTorch there
        lambda: checked_precision(feature_runtime(
            model.backbone, config.image_size, runtimes_dir(settings.data_dir), settings.runtime, threads_per_process(settings.devices),
            training_device(settings.accelerator), precision, calibration_photos(index.train, config, settings.seed),
        ), precision)
    )
    workers = resolve_workers(settings.workers, settings.accelerator, settings.devices)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # cached or not, training then draws the same random numbers
        photos = PhotoCache.in_cache(settings.data_dir)
        decoded = DecodedStore.for_config(config, settings.data_dir)
        try:
            train_features = extract_features(index.train, store, runtime, config, augment, views, workers, photos, decoded)
            val_features = extract_features(index.val, store, runtime, config, None, 1, workers, photos, decoded)
        except PrecisionUnavailable as error:
            if precision == "fp32":
                raise
            log.warning("%s; the features are computed in fp32", error)
            fallback = feature_datamodule(settings, index, model, image_size, "fp32")
            fallback.precision_refused = str(error)
            return fallback
    remember_store(settings, store)  # every photo's clean view is there: a later audit reads them without a model
    datamodule = FeatureDataModule(
        FeatureDataset(train_features, [s.label for s in index.train], settings.seed, draw_views=True),
        FeatureDataset(val_features, [s.label for s in index.val], settings.seed, draw_views=False),
        config,
        settings.batch_size,
        settings.seed,
        sampler_weights(settings, index),
    )
    datamodule.extraction_seconds = round(time.perf_counter() - started, 3)
    datamodule.precision = precision
    return datamodule


def feature_store(settings: RunSettings, model: Classifier, config: DataConfig, precision: str) -> FeatureStore:
    """Where the pretrained backbone's features for these settings and `precision` are cached."""
    ops = resolve_ops(settings.augment, settings.augment_set)
    return FeatureStore(store_dir(cache_dir(settings.data_dir), settings.backbone, model.backbone, config, ops, precision))


class PrecisionUnavailable(RuntimeError):
    """The model cannot run in the precision asked for here (no OpenVINO, no NNCF, or outputs pointing elsewhere)."""


def checked_precision(runtime: FeatureRuntime, precision: str) -> FeatureRuntime:
    """`runtime`, refused when it does not run in `precision` (its features would go into another precision's cache)."""
    if runtime.precision != precision:
        why = runtime.refused or f"{runtime.name} runs {runtime.precision}"
        raise PrecisionUnavailable(f"the model could not run in {precision} here: {why}")
    return runtime
