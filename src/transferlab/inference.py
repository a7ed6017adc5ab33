"""Use a trained classifier: `load(RUN)` gives a `Predictor` whose `predict` labels photos, by PyTorch or ONNX Runtime.

    import transferlab
    clf = transferlab.load("runs/compare")
    clf.predict(["dog.jpg", pil_image], top_k=5)
"""

import glob
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, Field, ValidationError, model_validator
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2.functional import pil_to_tensor

from .data.datasets import normalize, resize_and_crop
from .data.decode import UnreadableImageError, load_uint8, to_rgb
from .data.formats import is_image_file
from .data.names import readable_name
from .explain.explanation import Explanation
from .evaluate.calibration import softmax_with_temperature
from .evaluate.evaluation import run_calibration
from .evaluate.tta import DEFAULT_VIEWS, run_views, with_flips
from .explain.gradcam import ExplainError, grad_cam
from .files import runtimes_dir, short_reason
from .models.checkpoints import find_checkpoint, load_checkpoint_classifier
from .models.classifier import Classifier, DataConfig, data_config
from .models.precision import check_precision, recorded_precision
from .models.runtime import check_runtime, module_runtime
from .models.weights import WeightsError
from .rundir import RunDir, RunDirError

log = logging.getLogger(__name__)

ONNX_METADATA_KEY = "transferlab"
BATCH = 32
EXPLAIN_BATCH = 8
"""Photos explained at once (a backward pass holds every activation)."""

Photo = str | Path | Image.Image | torch.Tensor
"""A photo for `Predictor`: a file path, a PIL image, or a decoded RGB uint8 tensor (3, H, W)."""


def photo_list(items: Photo | Iterable[Photo]) -> list[Photo]:
    """One photo or many as a list (a (N, 3, H, W) tensor is N photos)."""
    if isinstance(items, (str, Path, Image.Image)) or (isinstance(items, torch.Tensor) and items.ndim == 3):
        return [items]
    return list(items)


def path_of(item: Photo) -> str | None:
    """The file a photo came from; None for one given as pixels."""
    return str(item) if isinstance(item, (str, Path)) else None


@dataclass(frozen=True)
class Prediction:
    """One answer: `probability` calibrated (the model's temperature applied), `raw_probability` as the softmax gave it."""

    label: str
    class_name: str
    probability: float
    raw_probability: float | None = None

    def as_dict(self) -> dict[str, Any]:
        raw = self.probability if self.raw_probability is None else self.raw_probability
        return {"label": self.label, "class": self.class_name, "probability": self.probability, "raw_probability": raw}


@dataclass(frozen=True)
class PhotoPrediction:
    """The top-k answers for one photo, best first; `error` says why a photo could not be read, `not_sure` why no
    answer is given (the top probability is below the minimum confidence asked for)."""

    path: str | None
    predictions: tuple[Prediction, ...] = ()
    error: str | None = None
    not_sure: str | None = None

    @property
    def label(self) -> str | None:
        """The answer: the top class's readable name, or None when not sure (or unreadable)."""
        return None if self.not_sure or not self.predictions else self.predictions[0].label

    def as_dict(self) -> dict[str, Any]:
        answer = {"path": self.path, "label": self.label, "predictions": [p.as_dict() for p in self.predictions]}
        return {**answer, "not_sure": self.not_sure} if self.not_sure else answer


def not_sure_reason(top: Prediction, min_confidence: float) -> str | None:
    """Why the top answer is withheld (its probability is below `min_confidence`), or None."""
    if top.probability >= min_confidence:
        return None
    return f"not sure: the top answer, {top.label}, has {top.probability:.0%}, below the {min_confidence:.0%} asked for"


@dataclass
class Predictor:
    """A trained classifier with its preprocessing and class names; `logits` maps a normalised batch to logits."""

    classes: list[str]
    config: DataConfig
    logits: Callable[[torch.Tensor], np.ndarray]
    source: str
    backend: str
    strategy: str | None = None
    names: list[str] = field(default_factory=list)
    precision: str = "fp32"
    model: Classifier | None = None
    """The PyTorch classifier (explanations need its gradients); None for an exported ONNX model."""
    temperature: float = 1.0
    """Logits are divided by it before the softmax (fitted on the validation photos; 1: not calibrated)."""
    tta: tuple[str, ...] = ()
    """Flips whose logits are averaged with the photo's (test-time augmentation); empty: none."""

    def __post_init__(self) -> None:
        self.names = self.names or [readable_name(c) for c in self.classes]
        self._to_tensor = resize_and_crop(self.config)
        self._normalize = normalize(self.config)

    def view(self, item: Photo) -> torch.Tensor:
        """A file path, a PIL image or a decoded RGB uint8 tensor (3, H, W) -> the (3, S, S) uint8 photo the model
        sees: resized and centre-cropped."""
        if isinstance(item, torch.Tensor):
            if item.dtype != torch.uint8 or item.ndim != 3 or item.shape[0] != 3:
                raise ValueError(f"a photo tensor must be RGB uint8 (3, H, W), not {item.dtype} {tuple(item.shape)}")
            image = item.cpu()
        elif isinstance(item, Image.Image):
            image = pil_to_tensor(to_rgb(item))
        else:
            image = load_uint8(item, min_size=self.decode_size)
        return self._to_tensor(image)

    @property
    def decode_size(self) -> int:
        """The short side photos are resized to before the centre crop (JPEGs may decode at a reduced scale down to it)."""
        return int(self.config.image_size / self.config.crop_pct)

    def preprocess(self, item: Photo) -> torch.Tensor:
        """A file path, a PIL image or an RGB uint8 tensor -> the normalised (3, S, S) tensor the model takes."""
        return self._normalize(self.view(item))

    def model_logits(self, batch: torch.Tensor) -> np.ndarray:
        """(N, classes) logits of a normalised batch, averaged over the `tta` flips when there are any."""
        if not self.tta:
            return self.logits(batch)
        return with_flips(lambda flipped: self.logits(torch.from_numpy(flipped)), self.tta)(batch.numpy())

    def probabilities(self, batch: torch.Tensor, calibrated: bool = True) -> np.ndarray:
        """(N, classes) probabilities of a normalised batch: calibrated by the temperature, or raw."""
        return softmax_with_temperature(self.model_logits(batch), self.temperature if calibrated else 1.0)

    def answers(self, batch: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
        """(calibrated, raw) probabilities of each photo of a normalised batch, from one pass of the model."""
        logits = self.model_logits(batch)
        calibrated, raw = softmax_with_temperature(logits, self.temperature), softmax_with_temperature(logits)
        return list(zip(calibrated, raw))

    def top(self, probabilities: np.ndarray, top_k: int, raw: np.ndarray | None = None) -> tuple[Prediction, ...]:
        """The `top_k` classes of one photo's probabilities, best first (ties: the lower class index)."""
        best = np.argsort(-probabilities, kind="stable")[: max(1, min(top_k, len(self.classes)))]
        return tuple(
            Prediction(self.names[c], self.classes[c], float(probabilities[c]), None if raw is None else float(raw[c]))
            for c in best
        )

    def answer(self, path: str | None, probabilities: np.ndarray, raw: np.ndarray, top_k: int, min_confidence: float = 0.0) -> PhotoPrediction:
        """One photo's `PhotoPrediction`, withheld as not sure below `min_confidence`."""
        predictions = self.top(probabilities, top_k, raw)
        return PhotoPrediction(path, predictions, not_sure=not_sure_reason(predictions[0], min_confidence))

    def predict(
        self, items: Photo | Iterable[Photo], top_k: int = 5,
        progress: Callable[[int], None] | None = None, min_confidence: float = 0.0,
    ) -> list[PhotoPrediction]:
        """Top-k (readable name, folder name, calibrated and raw probability) per photo; unreadable files get `error`
        set; below `min_confidence` a photo's answer is withheld (`label` None, `not_sure` says why). A tensor that
        is not an RGB uint8 photo raises ValueError (a caller's mistake, not a bad file)."""
        items = photo_list(items)
        top_k = max(1, min(top_k, len(self.classes)))
        names = [path_of(item) for item in items]
        results: list[PhotoPrediction | None] = [None] * len(items)
        readable: list[tuple[int, torch.Tensor]] = []
        for i, item in enumerate(items):
            try:
                readable.append((i, self.preprocess(item)))
            except UnreadableImageError as error:
                results[i] = PhotoPrediction(names[i], error=str(error))
        for start in range(0, len(readable), BATCH):
            chunk = readable[start : start + BATCH]
            answers = self.answers(torch.stack([tensor for _, tensor in chunk]))
            for (i, _), (calibrated, raw) in zip(chunk, answers):
                results[i] = self.answer(names[i], calibrated, raw, top_k, min_confidence)
            if progress:
                progress(len(chunk))
        return results


    def class_index(self, name: str) -> int:
        """The index of a class given by its folder name or its readable name (case-insensitive)."""
        for names in (self.classes, self.names):
            folded = [n.casefold() for n in names]
            if name.casefold() in folded:
                return folded.index(name.casefold())
        raise ExplainError(f"unknown class {name!r}; the classes: {', '.join(self.classes)}")

    def require_model(self) -> Classifier:
        """The PyTorch classifier, or an `ExplainError` saying that an exported model cannot be explained."""
        if self.model is None:
            raise ExplainError(
                f"{self.source}: an exported ONNX model has no gradients to explain with; explain the run directory "
                "or its checkpoint instead"
            )
        return self.model

    def explain(
        self, items: Photo | Iterable[Photo], top_k: int = 3,
        class_name: str | Sequence[str | None] | None = None,
    ) -> list[Explanation]:
        """Grad-CAM explanations (`explain.Explanation`: the photo, its top-k answers, the heatmap of the top class or
        of `class_name`: one for every photo, or one per photo), computed by the PyTorch model, up to `EXPLAIN_BATCH`
        photos a pass (a photo may be listed twice, for two classes). An unreadable photo raises `UnreadableImageError`."""
        model = self.require_model()
        items = photo_list(items)
        names = [class_name] * len(items) if class_name is None or isinstance(class_name, str) else list(class_name)
        if len(names) != len(items):
            raise ExplainError(f"{len(names)} class names for {len(items)} photos: give one, or one per photo")
        wanted = [None if name is None else self.class_index(name) for name in names]
        top_k = max(1, min(top_k, len(self.classes)))
        explanations: list[Explanation] = []
        for start in range(0, len(items), EXPLAIN_BATCH):
            chunk = items[start : start + EXPLAIN_BATCH]
            paths = dict.fromkeys(path for path in map(path_of, chunk) if path is not None)
            files = {path: self.view(path) for path in paths}  # a file listed twice (for two classes) is decoded once
            views = [self.view(item) if path_of(item) is None else files[str(item)] for item in chunk]
            batch = torch.stack([self._normalize(v) for v in views])
            with torch.no_grad():
                logits = model.eval()(batch).float().numpy()
            probabilities, raw = softmax_with_temperature(logits, self.temperature), softmax_with_temperature(logits)
            targets = [int(row.argmax()) if target is None else target for row, target in zip(probabilities, wanted[start : start + EXPLAIN_BATCH])]
            heatmaps = grad_cam(model, batch, targets)
            for item, view, row, raw_row, explained, heatmap in zip(chunk, views, probabilities, raw, targets, heatmaps):
                explanations.append(Explanation(
                    path=path_of(item), predictions=self.top(row, top_k, raw_row),
                    explained=self.classes[explained], explained_label=self.names[explained], heatmap=heatmap,
                    image=view.permute(1, 2, 0).numpy(),
                ))
        return explanations


def expand_paths(patterns: Sequence[str]) -> list[Path]:
    """Files, folders (recursively, image files only) and glob patterns, in the order given."""
    paths: list[Path] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_dir():
            paths.extend(sorted(p for p in path.rglob("*") if is_image_file(p) and not p.name.startswith(".")))
        elif path.exists():
            paths.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            if not matches:
                raise FileNotFoundError(f"{pattern}: no such file, folder or matching files")
            paths.extend(p for p in matches if p.is_file())
    return paths


def best_strategy(run: RunDir) -> str:
    """The strategy the run recommends, by the report's rule (`evaluate.diagnose.choose`): the most accurate on the
    evaluated photos unless a cheaper one is not significantly worse; without an evaluation, the best validation
    accuracy (the cheaper on a tie). Predict, serve and export use it."""
    from .evaluate.diagnose import choose
    from .evaluate.metrics import read_predictions
    from .train.strategies import costs

    trained = run.trained_strategies()
    if not trained:
        raise WeightsError(f"{run.path}: no checkpoints (checkpoints/<strategy>/best.ckpt); train a strategy first")
    metrics = run.read_metrics()
    accuracy = {s: metrics.get(s, {}).get("accuracy", metrics.get(s, {}).get("best_val_acc", 0.0)) for s in trained}
    predictions = read_predictions(run.predictions_file) if run.predictions_file.is_file() else None
    seed = run.read_config()["config"]["seed"] if run.config_file.is_file() else 0
    return choose(accuracy, costs(trained), predictions, seed)[0]


def _torch_predictor(path: Path, strategy: str | None, runtime: str = "torch", precision: str = "auto", tta: bool = False) -> Predictor:
    recorded: dict[str, Any] = {}
    if path.is_dir():
        run = RunDir(path)
        if not run.config_file.is_file() and not (path / "checkpoints").is_dir():
            raise WeightsError(f"{path}: not a run directory (no config.yaml, no checkpoints/)")
        strategy = strategy or best_strategy(run)
        if strategy not in run.trained_strategies():
            raise WeightsError(f"{path}: no {strategy} checkpoint; the run has {', '.join(run.trained_strategies()) or 'none'}")
        recorded = run.read_metrics().get(strategy, {})
    if precision == "auto":
        precision = recorded_precision(recorded) if runtime != "torch" else "fp32"
    elif precision != "fp32" and runtime == "torch":
        runtime = "openvino"  # only OpenVINO runs a reduced precision
    model, hparams = load_checkpoint_classifier(path, strategy or "frozen")
    model.eval()
    run = run_of(path)
    temperature = run.temperature(strategy or hparams.get("strategy") or "frozen") if run else 1.0
    config = data_config(model.backbone, hparams["image_size"])
    calibration = run_calibration(run, config) if precision == "int8" and run else None
    runner = module_runtime(model, (3, config.image_size, config.image_size), runtimes_dir(), runtime, precision=precision, calibration=calibration)
    if runner.precision != precision:
        log.warning("%s: runs in %s, not %s (%s)", path, runner.precision, precision,
                    "int8 needs a run directory's training photos to calibrate on" if precision == "int8" else "see the log above")
    return Predictor(
        classes=list(hparams["classes"]), config=config, logits=lambda batch: runner.run(batch.numpy()),
        source=str(find_checkpoint(path, strategy or "frozen")), backend=runner.name,
        strategy=hparams.get("strategy"), precision=runner.precision, model=model, temperature=temperature,
        tta=(run_views(run.read_config().get("augment_ops")) if run else DEFAULT_VIEWS) if tta else (),
    )


def run_explainer(run: RunDir) -> Callable[[str], Predictor | None]:
    """strategy → its PyTorch `Predictor` for explanations, or None (with a warning) when its checkpoint is unusable."""

    def explainer(strategy: str) -> Predictor | None:
        try:
            return load(run.path, strategy, "torch", "fp32")
        except (WeightsError, RunDirError, FileNotFoundError) as error:
            log.warning("%s: no Grad-CAM maps for %s (%s)", run.path, strategy, short_reason(error))
            return None

    return explainer


def run_of(path: Path) -> RunDir | None:
    """The run directory of a run path or of a checkpoint inside one (RUN/checkpoints/<strategy>/<name>.ckpt)."""
    folder = path if path.is_dir() else path.parent.parent.parent
    return RunDir(folder) if (folder / "config.yaml").is_file() else None


class OnnxMetadata(BaseModel):
    """What `tlab export` writes in an ONNX file's metadata: preprocessing and class names."""

    image_size: int = Field(ge=16, le=4096)
    interpolation: str
    crop_pct: float = Field(gt=0, le=1)
    mean: tuple[float, float, float]
    std: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]
    classes: list[str] = Field(min_length=2)
    names: list[str]
    strategy: str | None = None
    inference_precision: Literal["fp32", "bf16", "int8"] = "fp32"
    """The precision the run's accuracy gate kept; the graph itself is fp32."""
    temperature: float = Field(1.0, gt=0)
    """Calibration: logits are divided by it before the softmax (1: not calibrated)."""

    @model_validator(mode="after")
    def _consistent(self) -> "OnnxMetadata":
        InterpolationMode(self.interpolation)
        if len(self.names) != len(self.classes):
            raise ValueError(f"{len(self.names)} names for {len(self.classes)} classes")
        return self


def _onnx_predictor(path: Path, tta: bool = False) -> Predictor:
    import onnx
    import onnxruntime

    not_ours = f"{path}: not an ONNX model exported by `tlab export`"
    try:
        metadata = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception as error:  # protobuf's DecodeError, OSError...: a damaged or foreign file
        raise WeightsError(f"{not_ours} ({type(error).__name__})") from None
    if ONNX_METADATA_KEY not in metadata:
        raise WeightsError(f"{not_ours} (no {ONNX_METADATA_KEY!r} metadata)")
    try:
        info = OnnxMetadata.model_validate_json(metadata[ONNX_METADATA_KEY])
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"])) or "metadata"
        raise WeightsError(f"{path}: its {ONNX_METADATA_KEY!r} metadata is damaged ({where}: {first['msg']})") from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        size = info.image_size
        outputs = session.run(None, {input_name: np.zeros((1, 3, size, size), np.float32)})[0]
    except Exception as error:  # onnxruntime's own errors: a graph it cannot load or run at this input size
        raise WeightsError(f"{path}: ONNX Runtime cannot run it ({short_reason(error)})") from None
    if outputs.shape != (1, len(info.classes)):
        raise WeightsError(f"{path}: the model gives {outputs.shape[-1]} outputs per photo but its metadata names {len(info.classes)} classes")
    config = DataConfig(size, info.interpolation, info.crop_pct, info.mean, info.std)
    return Predictor(
        classes=info.classes, names=info.names, config=config,
        logits=lambda batch: session.run(None, {input_name: batch.numpy()})[0], source=str(path), backend="onnxruntime",
        strategy=info.strategy, temperature=info.temperature, tta=DEFAULT_VIEWS if tta else (),
    )


def load(
    source: str | Path, strategy: str | None = None, runtime: str = "torch", precision: str = "auto", tta: bool = False,
) -> Predictor:
    """A `Predictor` from a run directory (the strategy it recommends — `best_strategy` — or `strategy`), a .ckpt,
    or an exported .onnx.

    `runtime` "auto" (or "openvino", "onnxruntime") runs a checkpoint's model in the fastest runtime installed that
    matches PyTorch within 1e-4 (models.runtime); "torch" runs it in PyTorch. `precision` "auto": the inference
    precision the run's accuracy gate kept for the strategy (metrics.json), where this CPU runs it natively and the
    runtime is not PyTorch, else fp32; "bf16" or "int8" run in OpenVINO as asked (int8 calibrates on a run
    directory's training photos; without them, or without NNCF, the model runs in fp32 and a warning says so).
    `tta`: each photo's logits averaged with its flips' (those the run trained with; else the horizontal one).
    Probabilities are calibrated with the temperature the run's evaluation fitted (1 before there is one).
    """
    check_precision(precision)
    check_runtime(runtime)
    path = Path(source).expanduser()
    if not path.exists():
        raise WeightsError(f"{path}: no such run directory, checkpoint or model file")
    if path.suffix == ".onnx":
        return _onnx_predictor(path, tta)
    return _torch_predictor(path, strategy, runtime, precision, tta)
