"""Read what training wrote: a checkpoint as weights only (no code in it runs), and the classifier it holds."""

import logging
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from ..files import short_reason
from ..rundir import RunDir
from .classifier import Classifier, build_classifier
from .weights import WeightsError

log = logging.getLogger(__name__)

METADATA_KEY = "transferlab"
"""A checkpoint's own record: strategy, epoch (1-based, completed), best_epoch and best_val_acc."""


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, loaded as weights only (no code runs); a damaged or foreign file is a
    `WeightsError` naming it."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a foreign file: the error says it
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such checkpoint") from None
    except OSError as error:  # permissions, a failing disk: its own words say what to do
        raise WeightsError(f"{path}: cannot read it ({error.strerror or error})") from None
    except pickle.UnpicklingError:
        raise WeightsError(f"{path}: not a readable checkpoint (damaged, or holding more than weights)") from None
    except Exception as error:  # torch raises RuntimeError, EOFError, KeyError... on a truncated or random file
        log.debug("%s: torch.load said %r", path, error)  # its words ("174812789", miniz internals) say nothing to a user
        what = "an empty file" if Path(path).stat().st_size == 0 else "damaged, truncated, or not a PyTorch checkpoint"
        raise WeightsError(f"{path}: not a readable checkpoint ({what})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise WeightsError(f"{path}: not a transferlab checkpoint (no state_dict)")
    return checkpoint


def classifier_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The `Classifier` weights of a Lightning checkpoint (its module holds the classifier as `model`)."""
    return {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items()}


def checkpoint_epoch(checkpoint: dict[str, Any]) -> int:
    """Completed epochs recorded in a checkpoint (Lightning's `epoch` counts from 0 at the end of an epoch)."""
    record = checkpoint.get(METADATA_KEY) or {}
    return int(record.get("epoch", checkpoint.get("epoch", -1) + 1))



def find_checkpoint(path: str | Path, strategy: str = "frozen") -> Path:
    """A checkpoint file, or a run directory's best checkpoint of `strategy`."""
    path = Path(path).expanduser()
    if path.is_dir():
        checkpoint = RunDir(path).best_checkpoint(strategy)
        if not checkpoint.is_file():
            raise WeightsError(f"{path}: no {strategy} checkpoint (expected {checkpoint})")
        return checkpoint
    if not path.is_file():
        raise WeightsError(f"{path}: no such run directory or checkpoint file")
    return path


def load_checkpoint_classifier(path: str | Path, strategy: str = "frozen") -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the `Classifier` saved in a checkpoint (or a run directory's best `strategy` checkpoint)."""
    checkpoint_path = find_checkpoint(path, strategy)
    checkpoint = read_checkpoint(checkpoint_path)
    try:
        hparams = checkpoint["hyper_parameters"]
        model, _ = build_classifier(hparams["backbone"], len(hparams["classes"]), pretrained=False, dropout=hparams["dropout"])
        model.load_state_dict(classifier_state(checkpoint))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise WeightsError(f"{checkpoint_path}: not a transferlab checkpoint ({short_reason(error)})") from None
    return model, hparams
