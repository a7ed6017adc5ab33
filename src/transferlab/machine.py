"""What this machine offers a run, as `tlab info` prints it: the versions installed, the CPU and the extensions that
decide what `auto` chooses (inference precision, training precision), oneDNN's ISA cap, GPUs, the fast runtimes
installed, and what the cache folder holds. For a bug report, and for whoever wonders why `auto` chose fp32."""

import importlib.util
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .files import cache_dir, installed_version
from .models.devices import default_threads
from .models.precision import SPEED_FLAGS, candidate_precision, cpu_model, isa_cap, native_precisions, speed_flags, usable_cpu_flags
from .models.runtime import RUNTIMES
from .train.bf16_probe import MIN_SPEEDUP, kept_timings
from .train.distributed import resolve_precision

PACKAGES = ("transferlab", "torch", "torchvision", "timm", "lightning", "openvino", "onnxruntime", "nncf")


@dataclass(frozen=True)
class MachineInfo:
    """This machine as a run sees it; `cache` maps each entry of the cache folder to its size in bytes."""

    versions: dict[str, str | None]
    cpu: str
    cores: int
    cpu_flags: list[str] | None
    """Which of `SPEED_FLAGS` the CPU has; None where that cannot be read."""
    isa_cap: str | None
    usable_flags: list[str]
    native_precisions: list[str]
    auto_inference_precision: str
    auto_training_precision: str
    """What `--precision auto` trains in: "timed" where a few training steps decide (`train.bf16_probe`)."""
    fast_runtimes: list[str]
    gpus: list[str]
    cache_folder: str
    cache: dict[str, int]
    bf16_timings_kept: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[tuple[str, str]]:
        """(label, text) rows, as `tlab info` prints them."""
        versions = ", ".join(f"{name} {version}" for name, version in self.versions.items() if version)
        capped = sorted(set(self.cpu_flags or []) - set(self.usable_flags))
        cap = f"{self.isa_cap} (kernels may not use {', '.join(capped) or 'any of these'})" if self.isa_cap else "none"
        reduced = [p for p in self.native_precisions if p != "fp32"]
        training = {
            "timed": f"bf16-mixed where a few timed training steps show it >= {MIN_SPEEDUP}x faster, else 32-true "
                     f"({self.bf16_timings_kept} setup(s) timed and kept)",
            "32-true": "32-true (no bf16 its kernels may use here)" if not self.gpus else "32-true (the GPU has no bf16)",
        }.get(self.auto_training_precision, self.auto_training_precision)
        runtimes = ", ".join(self.fast_runtimes) or "none installed: PyTorch runs every layer (the openvino extra adds one)"
        inference = (f"--inference-precision auto tries {self.auto_inference_precision} on the CPU (native here: "
                     f"{', '.join(self.native_precisions)})" + ("; kept only where the accuracy gate passes" if reduced else "")
                     + ("; on a GPU, PyTorch in fp32" if self.gpus else ""))
        sizes = "".join(f"; {name} {_size(size)}" for name, size in self.cache.items())
        return [
            ("versions", versions),
            ("CPU", f"{self.cpu}, {self.cores} core(s) usable"),
            ("extensions", "unknown (no /proc/cpuinfo)" if self.cpu_flags is None else " ".join(self.cpu_flags) or "none of " + " ".join(SPEED_FLAGS)),
            ("oneDNN cap", cap),
            ("GPU", ", ".join(self.gpus) or "none (everything runs on the CPU)"),
            ("fast runtimes", runtimes),
            ("inference", inference),
            ("training", f"--precision auto: {training}"),
            ("cache", f"{self.cache_folder} ({_size(sum(self.cache.values()))}{sizes})"),
        ]


def machine_info(data_dir: str | Path | None = None) -> MachineInfo:
    """What this machine offers a run; `data_dir` is the cache folder as `--data-dir` names it (default as
    `files.cache_dir`)."""
    import torch

    folder = cache_dir(data_dir)
    usable = usable_cpu_flags()
    return MachineInfo(
        versions={"python": platform.python_version(), **{name: installed_version(name) for name in PACKAGES},
                  "torch": torch.__version__},  # with its build (+cpu, +cu130)
        cpu=cpu_model(),
        cores=default_threads(),
        cpu_flags=speed_flags(),
        isa_cap=isa_cap(),
        usable_flags=[flag for flag in SPEED_FLAGS if flag in usable],
        native_precisions=list(native_precisions()),
        auto_inference_precision=candidate_precision("auto"),
        auto_training_precision=_auto_training_precision(),
        fast_runtimes=[runtime for runtime in map(_installed_runtime, RUNTIMES[:-1]) if runtime],
        gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)],
        cache_folder=str(folder),
        cache=cache_sizes(folder),
        bf16_timings_kept=len(kept_timings(folder)),
    )


def _installed_runtime(module: str) -> str | None:
    """"name version" of a runtime that imports as `module`, whichever package installed it (onnxruntime-gpu, ...)."""
    if importlib.util.find_spec(module) is None:
        return None
    version = next(filter(None, (installed_version(f"{module}{suffix}") for suffix in ("", "-gpu", "-openvino", "-directml"))), None)
    return f"{module} {version or '(version unknown)'}"


def _auto_training_precision() -> str:
    """`resolve_precision`'s answer for `auto` here, "timed" where it would ask the bf16 probe."""
    asked = []
    chosen = resolve_precision("auto", "auto", lambda: asked.append(True) or True)
    return "timed" if asked else chosen


def cache_sizes(folder: Path) -> dict[str, int]:
    """Bytes under each entry of the cache folder, largest first; empty where there is no folder yet."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return {}
    sizes = {entry.name: _bytes_under(entry) for entry in entries}
    return dict(sorted(sizes.items(), key=lambda item: -item[1]))


def _bytes_under(path: Path) -> int:
    """Bytes of a file, or of the files under a folder; a link (to a dataset elsewhere, say) is not followed."""
    try:
        if path.is_symlink() or not path.is_dir():
            return _file_size(path)
    except OSError:  # a folder that may be listed but not entered
        return 0
    total = 0
    for root, _, files in os.walk(path):
        total += sum(_file_size(Path(root) / name) for name in files)
    return total


def _file_size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:  # removed meanwhile by another run
        return 0


def _size(count: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    unit = 0
    while count >= 1024 and unit < len(units) - 1:
        count, unit = count / 1024, unit + 1
    return f"{count:.0f} B" if unit == 0 else f"{count:.1f} {units[unit]}"
