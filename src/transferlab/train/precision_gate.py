"""The accuracy gate after a stage: the trained classifier with its frozen part in a reduced inference precision
against fp32, on the run's validation photos (`models.precision.gate`). Passing keeps the precision for the stage's
evaluation, predict and serve; failing falls back to fp32 (and `Experiment.fit` trains again a stage that learned
on the reduced precision's outputs)."""

from typing import Any, Sequence

import numpy as np
import torch

from ..config import RunSettings
from ..data.datasets import PhotoDataset
from ..data.decoded import DecodedStore
from ..data.photo_cache import PhotoCache
from ..data.sources import Sample
from ..files import runtimes_dir
from ..models.classifier import Classifier, data_config
from ..models.precision import GateResult, gate, gate_sample, int8_weight_bits
from ..models.runtime import eval_mode, feature_runtime, module_runtime
from .distributed import threads_per_process
from .features import extract_features
from .fit import calibration_photos, checked_precision, feature_store

BATCH = 32


def gate_samples(val: Sequence[Sample], seed: int) -> list[Sample]:
    return [val[i] for i in gate_sample(len(val), seed)]


def gate_on_features(
    settings: RunSettings, head_model: Classifier, pretrained: Classifier, val: Sequence[Sample], reduced_val: np.ndarray,
    precision: str, image_size: int | None,
) -> GateResult:
    """A head trained on cached features: its answers on the reduced precision's validation features against those
    on fp32 features of the same photos (computed once, and cached like any features)."""
    chosen = gate_sample(len(val), settings.seed)
    samples = [val[i] for i in chosen]
    config = data_config(pretrained.backbone, image_size)
    runtime = lambda: checked_precision(  # noqa: E731 - built only when the fp32 features are not cached yet
        feature_runtime(pretrained.backbone, config.image_size, runtimes_dir(settings.data_dir), settings.runtime,
                        threads_per_process(settings.devices)), "fp32")
    store = feature_store(settings, pretrained, config, "fp32")
    fp32 = extract_features(
        samples, store, runtime, config, None, 1, 0, PhotoCache.in_cache(settings.data_dir), DecodedStore.for_config(config, settings.data_dir)
    )[:, 0]
    with eval_mode(head_model), torch.inference_mode():
        logits_fp32 = head_model.head.forward_pooled(torch.from_numpy(fp32)).float().numpy()
        logits = head_model.head.forward_pooled(torch.from_numpy(np.ascontiguousarray(reduced_val[chosen]))).float().numpy()
    return gate(precision, logits_fp32, logits, np.array([s.label for s in samples]))


def gate_on_photos(
    settings: RunSettings, model: Classifier, val: Sequence[Sample], precision: str, image_size: int, train: Sequence[Sample] = (),
) -> GateResult:
    """The whole classifier in `precision` against fp32 on (up to `GATE_PHOTOS` of) the validation photos; int8
    quantizes on `train`'s photos, as the stage's frozen part did."""
    samples = gate_samples(val, settings.seed)
    config = data_config(model.backbone, image_size)
    calibration = calibration_photos(train, config, settings.seed) if precision == "int8" and train else None
    shape = (3, config.image_size, config.image_size)
    export_dir, threads = runtimes_dir(settings.data_dir), threads_per_process(settings.devices)
    dataset = PhotoDataset(samples, config, decoded=DecodedStore.for_config(config, settings.data_dir), photos=PhotoCache.in_cache(settings.data_dir))
    logits: dict[str, np.ndarray] = {}
    for name in ("fp32", precision):  # one compiled model in memory at a time (the photos come from the decoded cache)
        runtime = module_runtime(model, shape, export_dir, settings.runtime, threads, precision=name, calibration=calibration)
        run = checked_precision(runtime, name).run
        logits[name] = np.concatenate([
            run(torch.stack([dataset[i][0] for i in range(start, min(start + BATCH, len(dataset)))]).numpy())
            for start in range(0, len(dataset), BATCH)
        ])
        del runtime, run
    return gate(precision, logits["fp32"], logits[precision], np.array([s.label for s in samples]))


def precision_record(requested: str, used: str, result: GateResult | None, refused: str | None = None) -> dict[str, Any]:
    """What metrics.json says of a stage's inference precision (int8: with the width its weights were quantized to;
    `refused`: why the reduced precision could not run at all, when no gate judged it)."""
    width = {"int8_weight_bits": int8_weight_bits()} if used == "int8" else {}
    why = {"refused": refused} if refused and result is None else {}
    return {"requested": requested, "used": used, **width, **why, "gate": result.as_dict() if result else None}
