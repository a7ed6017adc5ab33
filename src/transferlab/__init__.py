"""transferlab: a folder of photos to a trained, evaluated and explained image classifier.

    import transferlab as tl
    exp = tl.Experiment("photos/")       # see transferlab.experiment
    exp.fit("frozen", epochs=5)
    clf = tl.load("runs/compare")        # a trained classifier: see transferlab.inference
    tl.audit("photos/")                  # duplicates, leaks, label errors, off-topic photos: a DataFrame
    tl.machine_info()                    # this machine as a run sees it (`tlab info`): CPU, what `auto` picks

Importing transferlab is cheap and changes no global state; what a name needs is imported when it is first used.
(`transferlab.experiment.train` is not offered here as `train`: that name is the `transferlab.train` subpackage.)
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Experiment": ("transferlab.experiment", "Experiment"),
    "load": ("transferlab.inference", "load"),
    "compare": ("transferlab.experiment", "compare"),
    "audit": ("transferlab.audits.findings", "audit"),
    "machine_info": ("transferlab.machine", "machine_info"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'transferlab' has no attribute {name!r}")
    import importlib

    module, attribute = _LAZY[name]
    return getattr(importlib.import_module(module), attribute)
