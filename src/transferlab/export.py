"""`tlab export`: the whole classifier as ONNX (dynamic batch, preprocessing and classes in its metadata),
checked against PyTorch on real photos."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .data.sources import Sample
from .data.names import readable_name
from .inference import ONNX_METADATA_KEY, best_strategy, load
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

    if Path(source).is_dir():
        strategy = strategy or best_strategy(RunDir(source))
    model, hparams = load_checkpoint_classifier(find_checkpoint(source, strategy or "frozen"))
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
        "input": "RGB float32 (N, 3, S, S): resize short side to S / crop_pct, centre crop S, scale to [0, 1], (x - mean) / std",
        "output": "logits (N, classes); softmax gives probabilities",
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
