"""Warnings Lightning and PyTorch print while training that say nothing to a user of transferlab, filtered around
each of our `Trainer.fit` calls only."""

import warnings
from contextlib import contextmanager
from typing import Iterator

QUIET_WARNINGS = (
    r".*LeafSpec.*is deprecated",
    r".*does not have many workers",  # sized on purpose: distributed.resolve_workers
    r".*smaller than the logging interval",  # short fits log once per epoch anyway
    r".*module\(s\) in eval mode at the start of training",  # frozen BatchNorm stays in eval, as Keras keeps it
)


@contextmanager
def quiet_warnings(*more: str) -> Iterator[None]:
    """`QUIET_WARNINGS` and the `more` message patterns ignored inside the block."""
    with warnings.catch_warnings():
        for message in (*QUIET_WARNINGS, *more):
            warnings.filterwarnings("ignore", message=message)
        yield
