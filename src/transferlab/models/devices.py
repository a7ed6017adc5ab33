"""Where a model runs when nobody says, found without loading PyTorch until a GPU is asked about."""

import os


def default_device() -> str:
    """"cuda" when there is a GPU PyTorch can use, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_threads() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
