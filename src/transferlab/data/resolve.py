"""DATA as the user writes it (a folder, a CSV manifest, or `stanford-dogs`) to a `DatasetIndex`."""

from pathlib import Path

from .sources import DatasetIndex, DataSourceError, csv_source, folder_source, select_classes
from .stanford_dogs import NAME as STANFORD_DOGS
from .stanford_dogs import stanford_dogs_source


def open_data(
    data: str | Path,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    breeds: str | int | None = None,
    data_dir: str | Path | None = None,
    source_url: str | None = None,
) -> DatasetIndex:
    """Index DATA: `stanford-dogs` (fetched into the cache on first use), a `.csv` manifest, or a folder.

    `breeds` keeps the first N classes or the named ones; `data_dir` and `source_url` apply to stanford-dogs.
    """
    if str(data) == STANFORD_DOGS:
        index = stanford_dogs_source(data_dir, source_url)
    elif str(data).lower().endswith(".csv"):
        index = csv_source(data, val_fraction, seed)
    else:
        path = Path(data).expanduser()
        if not path.exists() and str(data).replace("_", "-").lower() in {"stanford-dogs", "stanforddogs", "stanford"}:
            raise DataSourceError(f"{data}: no such folder; did you mean {STANFORD_DOGS}?")
        index = folder_source(path, val_fraction, seed)
    return select_classes(index, breeds)
