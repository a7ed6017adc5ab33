"""Devices, nodes and precision: the Lightning Trainer's arguments, and which process writes the run directory.

`tlab train --devices N` starts N - 1 more processes when the first stage starts training (Lightning runs the
same command again in each); torchrun and SLURM start them all at once. Every process trains; only global
rank 0 writes files. Each process takes its own shard of every epoch (`data.datasets.EpochSampler`), and
validation metrics are summed over all shards, so every validation photo is counted exactly once.
"""

import os
from typing import Any, Callable

from ..config import Accelerator, Precision
from ..models.devices import default_device, default_threads
from ..models.precision import CPU_FLAGS, usable_cpu_flags


RANK_VARIABLES = ("RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK", "SLURM_PROCID")
"""Set by Lightning's launcher (NODE_RANK, LOCAL_RANK), torchrun (RANK, GROUP_RANK, LOCAL_RANK) or SLURM."""


class DeviceError(ValueError):
    """Devices asked for that this machine does not have; says what it has."""


def check_devices(accelerator: Accelerator, devices: int) -> None:
    """Refuse, before anything is written, GPUs that are not there."""
    import torch

    if accelerator == "gpu" and not torch.cuda.is_available():
        raise DeviceError("--accelerator gpu: this machine has no CUDA GPU that PyTorch can use; use --accelerator cpu or auto")
    if uses_gpu(accelerator) and devices > torch.cuda.device_count():
        raise DeviceError(f"--devices {devices}: this machine has {torch.cuda.device_count()} GPU(s)")


def is_rank_zero() -> bool:
    """Whether this process is global rank 0 as its launcher set it up; true for a plain single process.

    Read from the environment, so it holds before any process group exists.
    """
    return all(int(os.environ.get(name) or 0) == 0 for name in RANK_VARIABLES)


def uses_gpu(accelerator: Accelerator) -> bool:
    """Whether training runs on CUDA GPUs: asked for, or `auto` where `models.devices.default_device` finds one."""
    return accelerator == "gpu" or (accelerator == "auto" and default_device() == "cuda")


def training_device(accelerator: Accelerator) -> str:
    """Where the model runs: "cuda" or "cpu" (`models.devices.default_device` for `auto`)."""
    return "cuda" if uses_gpu(accelerator) else "cpu"


def resolve_precision(precision: Precision, accelerator: Accelerator, bf16_pays: Callable[[], bool] | None = None, processes: int = 1) -> str:
    """`auto`: bf16 autocast on a GPU that supports it; on a CPU with native bf16 (AMX / AVX512-BF16) where
    `bf16_pays()` (a `train.bf16_probe.Bf16Probe`, asked only there) finds it faster for what trains; float32
    elsewhere: on CPUs without bf16, where autocast is emulated and slower, and with several CPU processes, whose
    timings could disagree."""
    if precision != "auto":
        return precision if precision != "32" else "32-true"
    if uses_gpu(accelerator):
        import torch

        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    if bf16_pays is None or processes > 1 or not cpu_has_bf16():
        return "32-true"
    return "bf16-mixed" if bf16_pays() else "32-true"


def cpu_has_bf16() -> bool:
    return bool(usable_cpu_flags() & set(CPU_FLAGS["bf16"]))


def resolve_workers(workers: int | None, accelerator: Accelerator, devices: int) -> int:
    """DataLoader workers: as given; else 0 on CPU (decoding in the training process keeps the cores for
    the model), and on GPUs the machine's cores shared among the devices, one left for each training process."""
    if workers is not None:
        return workers
    if not uses_gpu(accelerator):
        return 0
    return max(1, min(8, threads_per_process(devices) - 1))


def threads_per_process(devices: int) -> int:
    """This machine's cores shared among the training processes it runs."""
    return max(1, default_threads() // devices)


def trainer_options(
    accelerator: Accelerator, devices: int, num_nodes: int, precision: Precision, unused_parameters: bool = False,
    bf16_pays: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `L.Trainer` for where and how the run trains. Samplers shard themselves.
    `unused_parameters`: some trainable parameters get no gradient in some epochs (a stage that unfreezes as it goes).
    `bf16_pays`: see `resolve_precision`."""
    distributed = devices * num_nodes > 1
    if distributed:
        from lightning.pytorch.strategies import DDPStrategy

        strategy: Any = DDPStrategy(find_unused_parameters=unused_parameters)
    else:
        strategy = "auto"
    return {
        "accelerator": accelerator,
        "devices": devices,
        "num_nodes": num_nodes,
        "strategy": strategy,
        "precision": resolve_precision(precision, accelerator, bf16_pays, devices * num_nodes),
        "use_distributed_sampler": False,
    }
