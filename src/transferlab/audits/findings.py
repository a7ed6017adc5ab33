"""The audit of a data set: every detector on the photos' pooled features, findings as one table."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import RunSettings
from ..data.sources import DatasetIndex
from ..files import cache_dir, write_csv_atomic
from .duplicates import duplicate_groups
from .features import PhotoFeatures, photo_features
from .labels import label_issues
from .outliers import outliers

COLUMNS = ("path", "issue", "score", "suggested")
"""audit.csv; the DataFrame adds split, label, group and evidence."""
ISSUES = {
    "leak": "a copy of a photo in the other split (inflates validation accuracy)",
    "duplicate": "the same bytes as another photo of its split",
    "near-duplicate": "a re-encoded, resized, cropped, recoloured or mirrored copy of another photo of its split",
    "label": "looks like another class (suggested) to a head that never saw it",
    "off-topic": "far from every other photo of the data set",
}


def missing_packages() -> list[str]:
    """The packages of the `audit` extra that are not installed."""
    import importlib.util

    return [name for name in ("imagehash",) if importlib.util.find_spec(name) is None]


@dataclass
class Audit:
    """Findings (a DataFrame: path, issue, score, suggested, split, label, group, evidence), the photos per class and
    split, and what it took."""

    findings: pd.DataFrame
    classes: list[str]
    counts: dict[str, dict[str, int]]
    photos: int
    seconds: float

    @property
    def imbalance_ratio(self) -> float:
        """Photos of the largest class over photos of the smallest (training split, or all when it is empty)."""
        sizes = [sum(split.values()) for split in self.counts.values()]
        return max(sizes) / max(1, min(sizes)) if sizes else 1.0

    def of(self, issue: str) -> pd.DataFrame:
        return self.findings[self.findings["issue"] == issue]

    def summary(self) -> list[str]:
        """A few lines for the terminal."""
        lines = [f"{self.photos} photos, {len(self.classes)} classes, audited in {self.seconds:.1f} s"]
        for issue, meaning in ISSUES.items():
            found = self.of(issue)
            if len(found):
                lines.append(f"{issue}: {len(found)} photo{'s' if len(found) != 1 else ''} — {meaning}")
        if len(self.findings) == 0:
            lines.append("no duplicates, leaks, likely label errors or off-topic photos found")
        lines.append(self.imbalance_line())
        return lines

    def imbalance_line(self) -> str:
        sizes = {name: sum(split.values()) for name, split in self.counts.items()}
        smallest, largest = min(sizes, key=sizes.get), max(sizes, key=sizes.get)
        if sizes[smallest] == sizes[largest]:
            return f"balanced: {sizes[largest]} photos in every class"
        return (
            f"imbalance: {self.imbalance_ratio:.1f}x ({largest}: {sizes[largest]} photos, {smallest}: {sizes[smallest]})"
            + ("; a class-weighted loss or a balanced sampler may help its recall" if self.imbalance_ratio >= 3 else "")
        )

    def write_csv(self, path: Path) -> Path:
        rows = self.findings[list(COLUMNS)].to_dict("records")
        write_csv_atomic(path, COLUMNS, ({**row, "score": f"{row['score']:.4f}"} for row in rows))
        return path


def audit_features(photos: PhotoFeatures, classes: list[str], seed: int = 0, cache: Path | None = None) -> pd.DataFrame:
    """Every detector on `photos`: one row per finding, duplicates and leaks first, then label errors (most likely
    first), then off-topic photos (furthest out first). The label detector's probabilities are kept in `cache`."""
    paths, labels = photos.paths, photos.labels
    rows: list[dict[str, Any]] = []
    groups = duplicate_groups(paths, photos.digests, photos.features)
    for number, group in enumerate(groups, start=1):
        first = group.members[0]
        for member, similarity in zip(group.members[1:], group.similarity[1:]):
            same_bytes = photos.digests[member] == photos.digests[first]
            issue = "leak" if photos.splits[member] != photos.splits[first] else "duplicate" if same_bytes else "near-duplicate"
            rows.append(_row(photos, classes, member, issue, 1.0 if same_bytes else similarity, paths[first], group=number))
    for found in label_issues(photos.features, labels, len(classes), seed, cache=cache):
        rows.append(_row(photos, classes, found.index, "label", found.self_confidence, classes[found.suggested],
                         evidence=[paths[i] for i in found.evidence]))
    for found in outliers(photos.features):
        rows.append(_row(photos, classes, found.index, "off-topic", found.score, ""))
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "split", "label", "group", "evidence"])
    return frame


def _row(photos: PhotoFeatures, classes: list[str], index: int, issue: str, score: float, suggested: str,
         group: int | None = None, evidence: list[str] | None = None) -> dict[str, Any]:
    return {
        "path": photos.paths[index], "issue": issue, "score": float(score), "suggested": suggested,
        "split": photos.splits[index], "label": classes[photos.samples[index].label], "group": group, "evidence": evidence or [],
    }


def audit_index(settings: RunSettings, index: DatasetIndex) -> Audit:
    """The audit of the photos of `index` (features from the cache a frozen run with `settings` uses)."""
    started = time.perf_counter()
    photos = photo_features(settings, index)
    findings = audit_features(photos, list(index.classes), settings.seed, cache_dir(settings.data_dir) / "audit")
    counts = {name: {"train": 0, "val": 0} for name in index.classes}
    for sample, split in zip(photos.samples, photos.splits):
        counts[index.classes[sample.label]][split] += 1
    return Audit(findings, list(index.classes), counts, len(photos.samples), time.perf_counter() - started)


def audit(data: str | Path, **settings: Any) -> pd.DataFrame:
    """The findings of `data` (a folder, a .csv manifest, stanford-dogs, sample) as a DataFrame: path, issue, score,
    suggested, split, label, group, evidence; `settings` as `tlab train` takes them (backbone, val_fraction, seed...).
    The summary lines are in `.attrs["summary"]`."""
    from ..data.resolve import load_index

    run_settings = RunSettings(data=str(data), out=str(settings.pop("out", "audit")), **settings)
    result = audit_index(run_settings, load_index(run_settings.data_spec))
    result.findings.attrs["summary"] = result.summary()
    return result.findings
