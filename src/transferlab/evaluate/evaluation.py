"""Evaluate a run's models on labelled photos: predictions.csv, metrics, confusion matrices, worst mistakes."""

import functools
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..data.datasets import PhotoDataset
from ..data.decoded import DecodedStore
from ..data.photo_cache import PhotoCache
from ..data.resolve import DataSpec, data_name, open_data
from ..data.scan import readable
from ..data.stanford_dogs import NAME as STANFORD_DOGS
from ..data.sources import DataSourceError, DatasetIndex, Sample
from ..files import runtimes_dir, short_reason
from ..models.checkpoints import load_checkpoint_classifier
from ..models.classifier import Classifier, DataConfig, data_config
from ..models.devices import default_device
from ..models.precision import check_precision, recorded_precision
from ..models.runtime import Calibration, module_runtime
from ..rundir import RunDir
from .calibration import calibrate, expected_calibration_error
from .tta import flipped, run_views
from .metrics import compute_metrics, predict_logits, top_predictions, write_predictions

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("accuracy", "top5_accuracy", "macro_f1", "n_images")



FAST_RUNTIME_MIN_PHOTOS = 500
"""Exporting a model for OpenVINO / ONNX Runtime takes seconds, then each photo costs a third of PyTorch's: on
800 photos x 3 models (bench/evaluate.py, 2 cores) 28 s with the exports against 61 s in PyTorch. Fewer photos
than this are evaluated in PyTorch."""


def evaluate_models(
    out: RunDir,
    models: Mapping[str, Classifier],
    samples: Sequence[Sample],
    names: Sequence[str],
    image_size: int | None = None,
    batch_size: int = 64,
    runtime: str = "auto",
    device: str = "cpu",
    export_dir: Path | None = None,
    known_logits: Mapping[str, np.ndarray] | None = None,
    precisions: Mapping[str, str] | None = None,
    data_dir: str | Path | None = None,
    temperatures: Mapping[str, float] | None = None,
    tta: Sequence[str] = (),
    calibration: Calibration | None = None,
) -> dict[str, dict[str, Any]]:
    """Predict with every model on `samples`; write predictions.csv and evaluation.json into `out`.

    Probabilities are calibrated: with `temperatures` (strategy → T, e.g. a run's, on other photos) as given, else
    each model's temperature is fitted on these photos; either way each strategy's metrics hold its `calibration`.
    With `tta` (flips, `evaluate.tta`), the answers average the photo's logits with its flips'; each strategy's
    metrics then hold `tta`: the accuracy and seconds per photo with and without.

    Every photo is decoded once for all models; each model runs in the fastest runtime that matches PyTorch
    (`models.runtime`) when there are enough photos to pay for its export, in PyTorch on `device` otherwise.
    `known_logits` (strategy → logits on `samples`, e.g. a frozen model's head on cached features) spare those
    models the photos. `precisions` (strategy → inference precision, default fp32) apply where OpenVINO runs the
    model (int8 quantized on `calibration`'s photos); each strategy's metrics say which precision its answers came
    from. Returns the full metrics per strategy.
    """
    known_logits = {} if tta else (known_logits or {})  # cached features hold no flipped photo
    precisions = precisions or {}
    config = data_config(next(iter(models.values())).backbone, image_size)
    prefer = runtime if len(samples) >= FAST_RUNTIME_MIN_PHOTOS else "torch"
    shape = (3, config.image_size, config.image_size)
    runtimes = {
        strategy: module_runtime(
            model, shape, export_dir or runtimes_dir(), prefer, device=device, precision=precisions.get(strategy, "fp32"), calibration=calibration,
        )
        for strategy, model in models.items()
        if strategy not in known_logits
    }
    clocks: dict[str, list[float]] = {}
    logits = {}
    for strategy, runtime in runtimes.items():
        for view in ("", *tta):
            clocks[f"{strategy}|{view}"] = clock = [0.0]
            logits[f"{strategy}|{view}"] = timed(lambda batch, run=runtime.run, view=view: run(flipped(batch, view)), clock)
    paths = [s.path for s in samples]
    labels = np.array([s.label for s in samples])
    logits_of = dict(known_logits)
    tta_records = {}
    if logits:
        dataset = PhotoDataset(samples, config, decoded=DecodedStore.for_config(config, data_dir), photos=PhotoCache.in_cache(data_dir))
        labels, computed = predict_logits(logits, dataset, batch_size)
        for strategy in runtimes:
            plain = computed[f"{strategy}|"]
            logits_of[strategy] = np.mean([computed[f"{strategy}|{view}"] for view in ("", *tta)], axis=0)
            if tta:
                tta_records[strategy] = {
                    "views": ["original", *tta],
                    "accuracy_without": float((plain.argmax(axis=1) == labels).mean()),
                    "accuracy": float((logits_of[strategy].argmax(axis=1) == labels).mean()),
                    "seconds_per_photo_without": clocks[f"{strategy}|"][0] / max(1, len(samples)),
                    "seconds_per_photo": sum(clocks[f"{strategy}|{view}"][0] for view in ("", *tta)) / max(1, len(samples)),
                }
    results, predictions_of = {}, {}
    for strategy in models:
        calibration = calibration_of(logits_of[strategy], labels, None if temperatures is None else temperatures.get(strategy, 1.0))
        predictions_of[strategy] = top_predictions(strategy, paths, labels, logits_of[strategy], calibration["temperature"])
        results[strategy] = compute_metrics(predictions_of[strategy], names)
        results[strategy]["calibration"] = calibration
        results[strategy]["inference_precision"] = runtimes[strategy].precision if strategy in runtimes else precisions.get(strategy, "fp32")
        if strategy in tta_records:
            results[strategy]["tta"] = tta_records[strategy]
    write_predictions(out.predictions_file, list(predictions_of.values()), names)
    out.write_json(out.evaluation_file, results)
    return results


def timed(function: Callable[[np.ndarray], np.ndarray], clock: list[float]) -> Callable[[np.ndarray], np.ndarray]:
    """`function`, adding the seconds each call takes to `clock[0]`."""

    def run(batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        result = function(batch)
        clock[0] += time.perf_counter() - started
        return result

    return run


def calibration_of(logits: np.ndarray, labels: np.ndarray, temperature: float | None) -> dict[str, Any]:
    """`calibrate` on these photos (temperature None: fit it), or the ECE with a given temperature."""
    if temperature is None:
        return {**calibrate(logits, labels).as_dict(), "fitted_here": True}
    scaled, raw = (top_predictions("", [], labels, logits, t) for t in (temperature, 1.0))
    return {
        "temperature": temperature, "photos": int(len(labels)), "fitted_here": False,
        "ece_before": expected_calibration_error(raw.probability, raw.correct),
        "ece_after": expected_calibration_error(scaled.probability, scaled.correct),
    }


def evaluation_samples(data: DataSpec, classes: Sequence[str]) -> list[Sample]:
    """Photos of another labelled set, relabelled to a run's `classes`: its val split, or every photo if it has none."""
    index: DatasetIndex = open_data(data)
    unknown = [name for name in index.classes if name not in classes]
    if unknown:
        raise DataSourceError(f"{data.source}: class(es) the run was not trained on: {', '.join(unknown)}")
    samples = index.val if index.has_split else index.train + index.val
    label_of = {i: classes.index(name) for i, name in enumerate(index.classes)}
    return sorted((Sample(s.path, label_of[s.label]) for s in readable(samples)), key=lambda s: s.path)


def run_samples(run: RunDir, split: str = "val") -> list[Sample]:
    """The validation (or training) photos a run was trained with, from its config.yaml alone."""
    header = run.read_config()
    config = header["config"]
    data_dir = config.get("data_dir")
    if config["data"] == STANFORD_DOGS and not data_dir:
        data_dir = Path(header["data"]["root"]).parent.parent  # the cache the run used
    spec = DataSpec(config["data"], config.get("breeds"), config["val_fraction"], config["seed"], data_dir, config.get("source_url"))
    index = open_data(spec)
    return readable(index.val if split == "val" else index.train)


def run_calibration(run: RunDir, config: DataConfig) -> Calibration:
    """For int8: calibration photos from the run's training photos, found only when first asked for; none (and a
    warning: the model then runs in fp32) when they are no longer where config.yaml says."""
    from ..train.fit import calibration_photos

    @functools.cache
    def batches() -> list[np.ndarray]:
        try:
            train = run_samples(run, split="train")
        except Exception as error:  # the photos moved or the source is gone
            log.warning("%s: no training photos to calibrate int8 on (%s)", run.path, short_reason(error))
            return []
        if not train:
            log.warning("%s: no training photos to calibrate int8 on (none of them is readable where config.yaml says)", run.path)
            return []
        return calibration_photos(train, config, run.read_config()["config"]["seed"])()

    return batches


def summary(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {strategy: {key: metrics[key] for key in SUMMARY_KEYS} for strategy, metrics in results.items()}


def record_summary(run: RunDir, results: Mapping[str, Mapping[str, Any]]) -> None:
    """Add accuracy, top-5, macro-F1 of each best model to the strategy's entry in metrics.json."""
    for strategy, values in summary(results).items():
        run.update_metrics(strategy, {**run.read_metrics().get(strategy, {}), **values})


def record_calibration(run: RunDir, results: Mapping[str, Mapping[str, Any]]) -> None:
    """calibration.json: each evaluated strategy's temperature and calibration errors on the validation photos."""
    calibration = run.calibration_to_update()
    for strategy, metrics in results.items():
        calibration[strategy] = {key: value for key, value in metrics["calibration"].items() if key != "fitted_here"}
    run.write_json(run.calibration_file, calibration)


def evaluation_dir(run: RunDir, data: DataSpec | None) -> RunDir:
    """Where an evaluation is written: the run itself, or `evaluations/<name of DATA>/` inside it."""
    if data is None:
        return run
    return RunDir(run.path / "evaluations" / data_name(data.source))


def evaluate_run(
    run_path: str | Path,
    data: DataSpec | None = None,
    batch_size: int = 64,
    runtime: str = "auto",
    *,
    strategies: Sequence[str] | None = None,
    models: Mapping[str, tuple[Classifier, int]] | None = None,
    samples: Sequence[Sample] | None = None,
    device: str | None = None,
    export_dir: Path | None = None,
    known_logits: Mapping[str, np.ndarray] | None = None,
    precision: str = "auto",
    known_precision: str = "fp32",
    data_dir: str | Path | None = None,
    tta: bool = False,
) -> tuple[dict[str, dict[str, Any]], RunDir]:
    """Evaluate the trained strategies of a run (`strategies`, default all) on its validation photos, or on `data`,
    on a GPU when there is one; returns (metrics, where written). `models` (name → model and input size) and
    `samples` given by a caller that holds them are used instead of reading checkpoints and the data again, and
    `known_logits` (on the run's own validation photos, computed in `known_precision`) instead of running those
    models. `precision` "auto": each strategy in the inference precision its gate kept (metrics.json) where this
    CPU runs it natively, else fp32; or the one named. `tta`: answers averaged over the photo and the flips the run
    trained with. Temperatures are fitted when the run's own validation photos are evaluated without `tta`."""
    check_precision(precision)
    run = RunDir(run_path)
    if not run.config_file.is_file():
        raise FileNotFoundError(f"{run_path}: not a run directory (no config.yaml)")
    strategies = list(strategies or run.trained_strategies())
    if not strategies:
        raise FileNotFoundError(f"{run_path}: no trained strategy (no checkpoints/<strategy>/best.ckpt); train one first")
    classes = [entry["folder"] for entry in run.read_classes()]
    names = [entry["name"] for entry in run.read_classes()]
    if data is not None:
        samples = evaluation_samples(data, classes)
    elif samples is None:
        samples = run_samples(run)
    models = dict(models or {})
    for strategy in strategies:
        if strategy not in models:
            model, hparams = load_checkpoint_classifier(run.path, strategy)
            models[strategy] = (model, hparams["image_size"])
    image_size = next(iter(models.values()))[1]
    out = evaluation_dir(run, data)
    known_logits = known_logits if data is None else None
    metrics = run.read_metrics()
    precisions = {
        strategy: known_precision if known_logits and strategy in known_logits
        else recorded_precision(metrics.get(strategy, {})) if precision == "auto" else precision
        for strategy in strategies
    }
    own_photos = data is None and not tta
    temperatures = None if own_photos else {strategy: run.temperature(strategy) for strategy in strategies}
    views = run_views(run.read_config().get("augment_ops")) if tta else ()
    config = data_config(models[strategies[0]][0].backbone, image_size)
    calibration = run_calibration(run, config)  # read only if a model is quantized to int8
    with run.claimed():
        results = evaluate_models(
            out, {name: models[name][0] for name in strategies}, samples, names, image_size, batch_size, runtime,
            device or default_device(), export_dir, known_logits, precisions, data_dir, temperatures, views, calibration,
        )
        if own_photos:
            record_calibration(run, results)
        if data is None:
            record_summary(run, results)
    return results, out
