"""`tlab export`: the whole classifier as ONNX (dynamic batch, preprocessing and classes in its metadata),
checked against PyTorch on real photos. The graph is fp32; the metadata names the inference precision the run's
accuracy gate kept (`inference_precision`), for a deployment whose runtime can apply it (OpenVINO's
INFERENCE_PRECISION_HINT)."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .data.sources import Sample
from .data.names import readable_name
from .inference import ONNX_METADATA_KEY, best_strategy, load, run_of
from .models.checkpoints import find_checkpoint, load_checkpoint_classifier
from .models.classifier import data_config
from .files import write_atomic
from .models.runtime import onnx_bytes, relative_error
from .rundir import RunDir

PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ParityReport:
    """PyTorch vs the exported model on the same photos."""

    photos: int
    max_relative_logit_difference: float
    same_top1: int

    @property
    def passed(self) -> bool:
        return self.max_relative_logit_difference <= PARITY_TOLERANCE and self.same_top1 == self.photos


def export_onnx(source: str | Path, out: Path, strategy: str | None = None) -> Path:
    """Write the classifier of `source` (run directory or checkpoint) to `out` with its metadata."""
    import onnx

    gated, temperature = None, 1.0
    if Path(source).is_dir():
        strategy = strategy or best_strategy(RunDir(source))
        gated = (RunDir(source).read_metrics().get(strategy, {}).get("inference_precision") or {}).get("used")
    model, hparams = load_checkpoint_classifier(find_checkpoint(source, strategy or "frozen"))
    run = run_of(Path(source))
    if run is not None:
        temperature = run.temperature(strategy or hparams.get("strategy") or "frozen")
    config = data_config(model.backbone, hparams["image_size"])
    names = [readable_name(c) for c in hparams["classes"]]
    size = config.image_size
    proto = onnx.load_from_string(onnx_bytes(model, (3, size, size)))
    info = {
        "image_size": size,
        "interpolation": config.interpolation,
        "crop_pct": config.crop_pct,
        "mean": list(config.mean),
        "std": list(config.std),
        "classes": list(hparams["classes"]),
        "names": names,
        "backbone": hparams["backbone"],
        "strategy": hparams.get("strategy"),
        "inference_precision": gated or "fp32",
        "temperature": temperature,
        "input": "RGB float32 (N, 3, S, S): resize short side to S / crop_pct, centre crop S, scale to [0, 1], (x - mean) / std",
        "output": "logits (N, classes); softmax(logits / temperature) gives calibrated probabilities",
    }
    onnx.helper.set_model_props(proto, {ONNX_METADATA_KEY: json.dumps(info)})
    write_atomic(out, proto.SerializeToString())
    return out


def check_parity(source: str | Path, exported: Path, samples: Sequence[Sample], strategy: str | None = None) -> ParityReport:
    """Logits of PyTorch and ONNX Runtime on `samples`: the largest difference relative to the largest logit, and top-1 agreement."""
    reference, candidate = load(source, strategy), load(exported)
    batch = torch.stack([reference.preprocess(sample.path) for sample in samples])
    expected, got = reference.logits(batch), candidate.logits(batch)
    return ParityReport(
        photos=len(samples),
        max_relative_logit_difference=relative_error(got, expected),
        same_top1=int((expected.argmax(axis=1) == got.argmax(axis=1)).sum()),
    )


def export_and_check(
    source: str | Path, out: Path | None = None, strategy: str | None = None, photos: int = 32
) -> tuple[Path, ParityReport | None]:
    """`tlab export`: the classifier of a run directory (the strategy it recommends, or `strategy`) or checkpoint,
    written to `out` (default RUN/model_<strategy>.onnx), then checked against PyTorch on up to `photos` of the
    run's validation photos (None when `source` is no run directory: there are no photos to check on)."""
    from .evaluate.evaluation import run_samples

    source = Path(source)
    run = RunDir(source) if source.is_dir() else None
    if run is not None:
        strategy = strategy or best_strategy(run)
    target = out or (source if run is not None else source.parent) / f"model_{strategy or 'checkpoint'}.onnx"
    written = export_onnx(source, target, strategy)
    if run is None or not run.config_file.is_file():
        return written, None
    return written, check_parity(source, written, run_samples(run)[:photos], strategy)
