"""The machine a benchmark ran on: CPU model, core count and the vector/matrix extensions that change the figures."""

import atexit
import shutil
import tempfile

from transferlab.models.devices import default_threads
from transferlab.models.precision import cpu_model, speed_flags


def cpu() -> dict:
    """CPU model (with family and model numbers), usable cores and which of the extensions that change the figures
    it has (`SPEED_FLAGS`)."""
    return {"model": cpu_model(), "cores": default_threads(), "flags": speed_flags() or []}


def describe(info: dict) -> str:
    return f"{info['model']}, {info['cores']} cores, {' '.join(info['flags']) or 'no AVX2'}"


def scratch(prefix: str = "tlab-bench-") -> str:
    """A temporary folder removed when the benchmark's process exits (feature and photo caches run to gigabytes)."""
    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
