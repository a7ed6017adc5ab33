"""Warnings Lightning and PyTorch print while training that say nothing to a user of transferlab, filtered around
each of our `Trainer.fit` calls only; and Lightning's INFO lines, held back around our Trainers."""

import logging
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


LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's INFO lines ("GPU available: False", tips for its cloud products, "`Trainer.fit` stopped") held back
    inside the block, as the CLI holds them back: in a notebook they came with every fit. Shown where transferlab's
    own INFO messages are (`tlab -v`, or the user's logging set to INFO)."""
    if logging.getLogger("transferlab").isEnabledFor(logging.INFO):
        yield
        return
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    loggers = [logger for logger in loggers if logger.level in (logging.NOTSET, logging.INFO)]  # Lightning's own, not a user's choice
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
