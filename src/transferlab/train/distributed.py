"""Devices, nodes and precision: the Lightning Trainer's arguments, and which process writes the run directory.

`tlab train --devices N` starts N - 1 more processes when the first stage starts training (Lightning runs the
same command again in each); torchrun and SLURM start them all at once. Every process trains; only global
rank 0 writes files. Each process takes its own shard of every epoch (`data.datasets.EpochSampler`), and
validation metrics are summed over all shards, so every validation photo is counted exactly once.
"""

import os
from typing import Any

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


def resolve_precision(precision: Precision, accelerator: Accelerator, cpu_bf16_pays: bool = False) -> str:
    """`auto`: bf16 autocast on a GPU that supports it, and on a CPU with native bf16 (AMX / AVX512-BF16) where it
    speeds up what trains (`cpu_bf16_pays`: `bf16_pays_on_cpu`, e.g. the finetune's last block group; not a head
    alone, whose frozen backbone runs in the inference precision instead, nor scratch); float32 elsewhere, and on CPUs
    without bf16, where autocast is emulated and slower."""
    if precision != "auto":
        return precision if precision != "32" else "32-true"
    if uses_gpu(accelerator):
        import torch

        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_bf16_pays and cpu_has_bf16() else "32-true"


def bf16_pays_on_cpu(backbone: Any) -> bool:
    """Whether bf16 autocast speeds up training `backbone`, as frozen now, on a CPU with native bf16: something in it
    trains, and no depthwise convolution wider than 3x3 among what does. Each EfficientNet-Lite0 block alone, forward
    and backward at 224 px (bench/train_precision.py, 2-core Xeon with AMX): five of seven with 3x3 depthwise kernels
    1.4-2.8x faster in bf16, all nine with 5x5 ones 0.29-0.69x (oneDNN's bf16 kernels for them are slow). So the
    notebook's finetune (the last block, 3x3, and the head convolution) trains 1.30-1.48x faster in bf16 at 224 px,
    three blocks 0.68-0.72x; from scratch, where the 3x3 blocks at 112 and 56 px gain about what the 5x5 ones lose,
    B0 0.72x and Lite0 1.08x at 224 px (both about 0.5x at 96 px): fp32."""
    trains = any(parameter.requires_grad for parameter in backbone.parameters())
    return trains and not any(_wide_depthwise(module) for module in backbone.modules() if _trains_weight(module))


def _trains_weight(module: Any) -> bool:
    weight = getattr(module, "weight", None)
    return weight is not None and weight.requires_grad


def _wide_depthwise(module: Any) -> bool:
    """A convolution (torch's or timm's CondConv2d, ...) with one filter group per input channel, wider than 3x3."""
    groups, channels, kernel = (getattr(module, name, None) for name in ("groups", "in_channels", "kernel_size"))
    if groups is None or channels is None or kernel is None:
        return False
    return 1 < groups == channels and max(kernel if isinstance(kernel, tuple | list) else (kernel,)) > 3


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
    cpu_bf16_pays: bool = False,
) -> dict[str, Any]:
    """Keyword arguments of `L.Trainer` for where and how the run trains. Samplers shard themselves.
    `unused_parameters`: some trainable parameters get no gradient in some epochs (a stage that unfreezes as it goes).
    `cpu_bf16_pays`: see `resolve_precision`."""
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
        "precision": resolve_precision(precision, accelerator, cpu_bf16_pays),
        "use_distributed_sampler": False,
    }
