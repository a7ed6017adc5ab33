"""Predictions of a model on labelled photos, and the metrics computed from them alone."""

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.threads import prefetched
from ..files import write_csv_atomic

TOP_K = 5
PREDICTION_COLUMNS = (
    "strategy", "path", "label", "label_name", "predicted", "predicted_name", "probability", "top5", "raw_probability",
)


@dataclass(frozen=True)
class Predictions:
    """One model's answers on N photos: true label, top-1 with its probability (calibrated: softmax of the logits
    divided by the model's temperature) and its raw probability (temperature 1), and the top-5 classes."""

    strategy: str
    paths: tuple[str, ...]
    labels: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray
    top5: np.ndarray
    raw_probability: np.ndarray | None = None

    @property
    def raw(self) -> np.ndarray:
        return self.probability if self.raw_probability is None else self.raw_probability

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels


def predict_logits(
    logits: Mapping[str, Callable[[np.ndarray], np.ndarray]], dataset: Dataset, batch_size: int = 64
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(labels, logits per strategy) of every strategy's `logits` (normalised batch -> logits) over `dataset`, whose
    items are (image, label); each photo is decoded once for all of them, the next batch while the models run on this one."""
    labels, chunks = [], {strategy: [] for strategy in logits}
    for images, batch_labels in prefetched(DataLoader(dataset, batch_size=batch_size, shuffle=False)):
        batch = np.ascontiguousarray(images.numpy())
        for strategy, run in logits.items():
            chunks[strategy].append(run(batch))
        labels.append(batch_labels)
    return torch.cat(labels).numpy(), {strategy: np.concatenate(parts) for strategy, parts in chunks.items()}


def top_predictions(
    strategy: str, paths: Sequence[str], labels: np.ndarray, logits: np.ndarray, temperature: float = 1.0
) -> Predictions:
    """One model's `Predictions` from its logits (N, classes) on photos of known `labels`."""
    raw = torch.softmax(torch.from_numpy(logits).double(), dim=1)
    top = raw.topk(min(TOP_K, raw.shape[1]), dim=1)
    calibrated = torch.softmax(torch.from_numpy(logits).double() / temperature, dim=1)
    return Predictions(
        strategy=strategy,
        paths=tuple(str(p) for p in paths),
        labels=labels,
        predicted=top.indices[:, 0].numpy(),
        probability=calibrated.gather(1, top.indices[:, :1])[:, 0].float().numpy(),
        top5=top.indices.numpy(),
        raw_probability=top.values[:, 0].float().numpy(),
    )


def write_predictions(path: Path, predictions: Sequence[Predictions], names: Sequence[str]) -> None:
    """predictions.csv: one row per photo and strategy; top5 lists class indices, best first."""
    rows = [
        {
            "strategy": p.strategy,
            "path": p.paths[i],
            "label": int(p.labels[i]),
            "label_name": names[p.labels[i]],
            "predicted": int(p.predicted[i]),
            "predicted_name": names[p.predicted[i]],
            "probability": f"{p.probability[i]:.6f}",
            "top5": " ".join(str(int(c)) for c in p.top5[i]),
            "raw_probability": f"{p.raw[i]:.6f}",
        }
        for p in predictions
        for i in range(len(p.paths))
    ]
    write_csv_atomic(path, PREDICTION_COLUMNS, rows)


def read_predictions(path: Path) -> dict[str, Predictions]:
    """predictions.csv back into `Predictions` per strategy, in file order."""
    by_strategy: dict[str, list[dict[str, str]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            by_strategy.setdefault(row["strategy"], []).append(row)
    return {
        strategy: Predictions(
            strategy=strategy,
            paths=tuple(row["path"] for row in rows),
            labels=np.array([int(row["label"]) for row in rows]),
            predicted=np.array([int(row["predicted"]) for row in rows]),
            probability=np.array([float(row["probability"]) for row in rows]),
            top5=np.array([[int(c) for c in row["top5"].split()] for row in rows]),
            raw_probability=np.array([float(row.get("raw_probability") or row["probability"]) for row in rows]),
        )
        for strategy, rows in by_strategy.items()
    }


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def macro_f1(confusion: np.ndarray) -> float:
    """Mean over classes of F1; a class never predicted nor present counts as 0."""
    true_positive = np.diag(confusion).astype(float)
    precision_den = confusion.sum(axis=0)
    recall_den = confusion.sum(axis=1)
    denominator = precision_den + recall_den
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return float(f1.mean())


def most_confused(confusion: np.ndarray, names: Sequence[str], k: int = 10) -> list[dict[str, Any]]:
    """The `k` largest off-diagonal cells: which class was taken for which, how often."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:k]
    pairs = []
    for flat in order:
        true, pred = np.unravel_index(flat, off.shape)
        if off[true, pred] == 0:
            break
        pairs.append({"true": names[true], "predicted": names[pred], "count": int(off[true, pred])})
    return pairs


def compute_metrics(predictions: Predictions, names: Sequence[str]) -> dict[str, Any]:
    """accuracy (top-1), top5_accuracy, macro_f1, per-class accuracy, confusion matrix, most-confused pairs."""
    confusion = confusion_matrix(predictions.labels, predictions.predicted, len(names))
    per_class = np.divide(
        np.diag(confusion), confusion.sum(axis=1), out=np.full(len(names), np.nan), where=confusion.sum(axis=1) > 0
    )
    in_top5 = (predictions.top5 == predictions.labels[:, None]).any(axis=1)
    return {
        "n_images": int(len(predictions.labels)),
        "accuracy": float(predictions.correct.mean()),
        "top5_accuracy": float(in_top5.mean()),
        "macro_f1": macro_f1(confusion),
        "per_class_accuracy": {name: (None if np.isnan(a) else float(a)) for name, a in zip(names, per_class)},
        "most_confused": most_confused(confusion, names),
        "confusion_matrix": confusion.tolist(),
    }


def confident_mistakes(predictions: Predictions, k: int = 8) -> list[int]:
    """Indices of the `k` wrong answers given with the highest probability."""
    wrong = np.flatnonzero(~predictions.correct)
    return wrong[np.argsort(-predictions.probability[wrong], kind="stable")][:k].tolist()
