"""Data efficiency: validation accuracy against training photos per class, several seeds per point.

Each point's mean comes with a 95 % band (Student's t over the seeds). Whether more photos would still help is the
slope at the end of the curve — accuracy gained per doubling of the photos between the last two points — with the
uncertainty of that difference (its seeds are paired: the same seed draws nested subsets).
"""

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from scipy import stats

from .diagnose import Finding

POINTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@dataclass
class Curve:
    """`accuracy[i][s]`: validation accuracy with `photos[i]` training photos per class (the last: all), seed s."""

    photos: list[int]
    accuracy: list[list[float]]
    strategy: str = "frozen"
    seconds: float = 0.0
    validation_photos: int = 0
    notes: list[str] = field(default_factory=list)
    finetune: dict[int, float] = field(default_factory=dict)
    """Validation accuracy of the finetune strategy (continuing from the first draw's frozen head) at some points."""

    def as_dict(self) -> dict:
        return {**asdict(self), "mean": self.mean.tolist(), "band": [list(b) for b in self.band], "verdict": self.verdict(), "outlook": self.outlook()}

    @property
    def mean(self) -> np.ndarray:
        return np.array([np.mean(row) for row in self.accuracy])

    @property
    def band(self) -> list[tuple[float, float]]:
        """95 % interval of each point's mean over its seeds, within 0-1 (the mean itself with one seed)."""
        bands = []
        for row in self.accuracy:
            mean = float(np.mean(row))
            if len(row) < 2:
                bands.append((mean, mean))
                continue
            half = float(stats.t.ppf(0.975, len(row) - 1) * np.std(row, ddof=1) / math.sqrt(len(row)))
            bands.append((max(mean - half, 0.0), min(mean + half, 1.0)))  # an accuracy: a few seeds' t-band may overshoot
        return bands

    def end_slope(self) -> tuple[float, float]:
        """(accuracy gained per doubling of the photos between the last two points, its 95 % half-width)."""
        if len(self.photos) < 2:
            return 0.0, float("inf")
        doublings = math.log2(self.photos[-1] / self.photos[-2])
        gains = (np.array(self.accuracy[-1]) - np.array(self.accuracy[-2])) / max(doublings, 1e-9)
        if len(gains) < 2:
            return float(gains.mean()), float("inf")
        return float(gains.mean()), float(stats.t.ppf(0.975, len(gains) - 1) * gains.std(ddof=1) / math.sqrt(len(gains)))

    def outlook(self) -> str:
        """"rising" (the end slope's 95 % interval lies above zero), "flattened", or "unknown" (one seed)."""
        slope, half = self.end_slope()
        if not math.isfinite(half):
            return "unknown"
        return "rising" if slope - half > 0 else "flattened"

    def verdict(self) -> str:
        slope, half = self.end_slope()
        if not math.isfinite(half):
            return f"{slope * 100:+.1f} points per doubling of the photos at the end (one seed: no uncertainty; run more seeds)."
        if slope - half > 0:
            return (f"More photos should still help: {slope * 100:+.1f} points per doubling at the end "
                    f"(95 % interval {100 * (slope - half):+.1f} to {100 * (slope + half):+.1f}).")
        return (f"The curve has flattened: {slope * 100:+.1f} points per doubling at the end "
                f"(95 % interval {100 * (slope - half):+.1f} to {100 * (slope + half):+.1f}, which includes no gain); "
                "more photos of the same kind may add little.")

    def figure(self) -> Figure:
        figure = Figure(figsize=(7, 4.2), layout="constrained")
        ax = figure.subplots()
        low, high = zip(*self.band)
        ax.fill_between(self.photos, low, high, alpha=0.25, color="#4c72b0", label="95 % band of the mean")
        ax.plot(self.photos, self.mean, marker="o", color="#4c72b0", label=f"mean of {len(self.accuracy[0])} seeds")
        if self.finetune:
            points = sorted(self.finetune)
            ax.plot(points, [self.finetune[p] for p in points], marker="D", linestyle="--", color="#dd8452",
                    label="finetune, continuing from the first draw's frozen head")
        ax.set(xscale="log", xlabel="training photos per class", ylabel="validation accuracy",
               title=f"{self.strategy}{' and finetune' if self.finetune else ''}: accuracy against photos per class")
        ax.set_xticks(self.photos, [str(p) for p in self.photos])
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        return figure

    def table(self) -> list[str]:
        if not self.finetune:
            rows = ["| photos per class | accuracy (mean) | 95 % band |", "| ---: | ---: | --- |"]
            return rows + [f"| {p} | {m:.1%} | {lo:.1%} – {hi:.1%} |" for p, m, (lo, hi) in zip(self.photos, self.mean, self.band)]
        rows = ["| photos per class | accuracy (mean) | 95 % band | finetune |", "| ---: | ---: | --- | ---: |"]
        return rows + [
            f"| {p} | {m:.1%} | {lo:.1%} – {hi:.1%} | {f'{self.finetune[p]:.1%}' if p in self.finetune else '–'} |"
            for p, m, (lo, hi) in zip(self.photos, self.mean, self.band)
        ]


def subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` photos of each class (all of a smaller class), drawn by `seed`; for one seed, the
    subsets of growing size are nested (a prefix of one permutation per class)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        mine = np.flatnonzero(labels == label)
        chosen.extend(rng.permutation(mine)[:per_class])
    return np.sort(np.array(chosen, dtype=int))


def curve_finding(record: dict) -> Finding:
    """The diagnosis's answer to "would more photos help?" from a recorded curve (curve.json)."""
    return Finding(record.get("strategy", "frozen"), "data", record.get("outlook", "unknown"), f"Photos per class (tlab curve): {record['verdict']}")
