"""DATA as the user writes it (a folder, a CSV manifest, or `stanford-dogs`) to a `DatasetIndex`."""

from dataclasses import dataclass
from pathlib import Path

from .photo_cache import PhotoCache
from .sample import NAME as SAMPLE
from .sample import sample_dir
from .scan import drop_unreadable
from .sources import DatasetIndex, DataSourceError, csv_source, folder_source, select_classes
from .stanford_dogs import NAME as STANFORD_DOGS
from .stanford_dogs import stanford_dogs_source


@dataclass(frozen=True)
class DataSpec:
    """Which photos, and how to read them: travels as one value from the config to every reader of DATA."""

    source: str
    """A folder, a CSV manifest, `stanford-dogs`, or `sample` (the clothing photos shipped in the package)."""
    breeds: str | int | None = None
    """The first N classes, or the named ones ("beagle,Samoyed")."""
    val_fraction: float = 0.2
    """Share of each class held out when the source has no split of its own."""
    seed: int = 0
    """Seed of that split."""
    data_dir: str | Path | None = None
    """stanford-dogs: the cache folder."""
    source_url: str | None = None
    """stanford-dogs: a mirror URL or a local folder with the archives."""


def data_name(source: str) -> str:
    """DATA as a file name: the folder's or the manifest's name, or the source's own (stanford-dogs, sample)."""
    return Path(str(source).rstrip("/")).name.removesuffix(".csv") or str(source)


def data_title(source: str) -> str:
    """DATA as a title names it: "Stanford Dogs", "the clothing sample", or the folder's or manifest's name."""
    return {STANFORD_DOGS: "Stanford Dogs", SAMPLE: "the clothing sample"}.get(source) or data_name(source)


def open_data(data: str | Path | DataSpec) -> DatasetIndex:
    """Index DATA (a `DataSpec`, or just its source with the default options): `stanford-dogs` (fetched into the
    cache on first use), `sample` (shipped in the package), a `.csv` manifest, or a folder; then keep the spec's
    breeds."""
    spec = data if isinstance(data, DataSpec) else DataSpec(str(data))
    source = spec.source
    if source == STANFORD_DOGS:
        index = stanford_dogs_source(spec.data_dir, spec.source_url)
    elif source == SAMPLE:
        index = folder_source(sample_dir(), spec.val_fraction, spec.seed)
    elif source.lower().endswith(".csv"):
        index = csv_source(source, spec.val_fraction, spec.seed)
    else:
        path = Path(source).expanduser()
        if not path.exists() and source.replace("_", "-").lower() in {"stanford-dogs", "stanforddogs", "stanford"}:
            raise DataSourceError(f"{source}: no such folder; did you mean {STANFORD_DOGS}?")
        index = folder_source(path, spec.val_fraction, spec.seed)
    return select_classes(index, spec.breeds)


def load_index(spec: DataSpec) -> DatasetIndex:
    """A run's photos: DATA indexed (`open_data`), unreadable photos dropped and listed (their verdicts kept in the
    photo cache of `spec.data_dir`)."""
    return drop_unreadable(open_data(spec), PhotoCache.in_cache(spec.data_dir))
