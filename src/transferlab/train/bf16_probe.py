"""Whether bf16 autocast speeds up training on this CPU: timed once per CPU and trainable set, not assumed.

Which way it goes depends on the CPU and on what trains (bench/train_precision.py, training steps at 224 px,
batch 32). On a 2-core Intel Xeon with AMX: the notebook's finetune (last block and head convolution) 1.30-1.48x
faster in bf16, the last three blocks 0.68-0.72x, from scratch 1.08x (Lite0) and 0.72x (B0) — oneDNN's bf16 kernels
for 5x5 depthwise convolutions are slow there. On a 2-core AMD EPYC (Zen 5) with AVX512-BF16 and no AMX: the
finetune 1.36-1.43x, the last three blocks 0.87x, but from scratch 2.04x (Lite0) and 1.75x (B0). No rule read off
the model and the CPU's flags got both right, so `auto` times a few training steps of what trains, in fp32 and
under bf16 autocast, on random inputs of the run's shape, and keeps bf16 only when it is clearly faster. The answer
is kept in the cache folder (`bf16-probe.json`), keyed by everything that changes it, so each setup is timed once.
"""

import hashlib
import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import cache_dir, write_atomic
from ..models.classifier import Classifier
from ..models.freezing import set_frozen_batchnorms_eval
from ..models.precision import cpu_model, isa_cap, usable_cpu_flags
from ..models.split import split_at_first_trainable

log = logging.getLogger(__name__)

PROBE_FILE = "bf16-probe.json"
PROBE_VERSION = 1
"""Bumped when what the probe times changes, so earlier answers are timed again."""
MIN_SPEEDUP = 1.1
"""bf16 is kept only when a step is at least this much faster: near-even timings keep fp32's exact arithmetic."""
PROBE_BATCH = 32
"""Steps are timed on at most this many images (a step's time per image hardly depends on the batch beyond it)."""
ROUNDS = 3
"""Timed steps in each precision, alternated, after one warm-up step of each."""


@dataclass
class Bf16Probe:
    """Whether bf16 autocast pays for training `model` as frozen now, asked (called) only where the precision is
    `auto` on a CPU with native bf16; `speedup` is the timing it answered by, None until asked. `whole_model`: PyTorch
    runs the frozen trunk too (no fast runtime), so a step is timed through all of it."""

    model: Classifier
    image_size: int
    batch_size: int
    data_dir: str | Path | None = None
    whole_model: bool = False
    speedup: float | None = None

    def __call__(self) -> bool:
        self.speedup = bf16_speedup(self.model, self.image_size, self.batch_size, self.data_dir, self.whole_model)
        return self.speedup is not None and self.speedup >= MIN_SPEEDUP


_TIMED: dict[str, float] = {}
"""This process's timings by `probe_key`: every decision of one stage gets the same answer, kept file or not."""


def bf16_speedup(model: Classifier, image_size: int, batch_size: int, data_dir: str | Path | None = None, whole_model: bool = False) -> float | None:
    """fp32's training-step time over bf16 autocast's for what trains in `model` on this CPU: the kept answer, else
    timed now (seconds to half a minute) and kept. None when nothing of the backbone trains (a head on cached
    features gains nothing)."""
    if not any(parameter.requires_grad for parameter in model.backbone.parameters()):
        return None
    batch = min(batch_size, PROBE_BATCH)
    key = probe_key(model, image_size, batch, whole_model)
    path = cache_dir(data_dir) / PROBE_FILE
    if key not in _TIMED:
        kept = _read(path).get(key, {}).get("bf16_speedup")
        _TIMED[key] = kept if _is_number(kept) else _time_and_keep(model, image_size, batch, whole_model, key, path)
    return _TIMED[key]


def _time_and_keep(model: Classifier, image_size: int, batch: int, whole_model: bool, key: str, path: Path) -> float:
    started = time.perf_counter()
    fp32_s, bf16_s = time_training_steps(model, image_size, batch, whole_model)
    speedup = fp32_s / bf16_s
    answers = _read(path)  # another process may have added its own meanwhile
    answers[key] = {"fp32_step_s": fp32_s, "bf16_step_s": bf16_s, "bf16_speedup": speedup}
    try:
        write_atomic(path, json.dumps(answers, indent=1), durable=False)
    except OSError as error:
        log.warning("could not keep the bf16 timing in %s (%s); another process will time it again", path, error)
    log.info("bf16 autocast against fp32 on this CPU, a training step of what trains: %.3f s vs %.3f s (%.2fx; timed "
             "once in %.0f s, kept in %s)", bf16_s, fp32_s, speedup, time.perf_counter() - started, path)
    return speedup


def probe_key(model: Classifier, image_size: int, batch: int, whole_model: bool = False) -> str:
    """What a step's speed depends on: the CPU (model, usable flags, oneDNN's cap), torch and its threads, the
    backbone with which parameters train (names, shapes, trainable or not; not the head, whose size follows the
    classes), whether the trunk is timed too, the input size and the batch."""
    layers = hashlib.sha256()
    for name, parameter in model.backbone.named_parameters():
        layers.update(f"{name}:{tuple(parameter.shape)}:{parameter.requires_grad};".encode())
    return f"{_this_machine()}{layers.hexdigest()[:16]}|{'whole' if whole_model else 'tail'}|{image_size}px|batch {batch}"


def _this_machine() -> str:
    """How every `probe_key` of this probe version starts on this CPU, with this torch and its threads now."""
    flags = ",".join(sorted(usable_cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
    return (f"v{PROBE_VERSION}|{cpu_model()}|{flags}|cap={isa_cap()}|torch {torch.__version__}|"
            f"threads {torch.get_num_threads()}|")


def kept_timings(data_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The timings kept in a cache folder (`--data-dir`) that apply here now (this CPU, torch and threads), by
    `probe_key`."""
    return {key: value for key, value in _read(cache_dir(data_dir) / PROBE_FILE).items() if key.startswith(_this_machine())}


def time_training_steps(model: Classifier, image_size: int, batch: int, whole_model: bool = False) -> tuple[float, float]:
    """Median seconds of a training step (forward, backward, Adam) in fp32 and under bf16 autocast, alternated, on a
    copy of what trains: the tail after the frozen trunk (whose outputs training reads from a fast runtime) and the
    head, or the whole classifier (`whole_model`, or where it does not split). The global random state is left as it
    was."""
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        generator = torch.Generator().manual_seed(0)
        trainable, inputs = _trainable_part(model, image_size, batch, generator, whole_model)
        labels = torch.randint(0, model.head[-1].out_features, (batch,), generator=generator)
        optimizer = torch.optim.Adam([parameter for parameter in trainable.parameters() if parameter.requires_grad])
        times: dict[bool, list[float]] = {False: [], True: []}
        for round_ in range(ROUNDS + 1):
            for bf16 in (False, True):
                seconds = _step_seconds(trainable, optimizer, inputs, labels, bf16)
                if round_:
                    times[bf16].append(seconds)
    return statistics.median(times[False]), statistics.median(times[True])


def _trainable_part(model: Classifier, image_size: int, batch: int, generator: torch.Generator, whole_model: bool) -> tuple[nn.Module, torch.Tensor]:
    copy = _training_copy(model)
    images = torch.randn(batch, 3, image_size, image_size, generator=generator)
    split = None if whole_model else split_at_first_trainable(copy.backbone)
    if split is None:
        return copy, images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        trunk_output = split.trunk.eval()(images.contiguous(memory_format=torch.channels_last))
    return nn.Sequential(split.tail, copy.head), trunk_output.contiguous(memory_format=torch.channels_last)


def _training_copy(model: Classifier) -> Classifier:
    """A copy in training mode, frozen BatchNorm in eval and channels_last, as `train.module` trains it."""
    import copy

    trained = copy.deepcopy(model).train()
    set_frozen_batchnorms_eval(trained)
    return trained.to(memory_format=torch.channels_last)


def _step_seconds(trainable: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, labels: torch.Tensor, bf16: bool) -> float:
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = nn.functional.cross_entropy(trainable(inputs).float(), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def _read(path: Path) -> dict[str, Any]:
    """The answers kept so far; those that are not a dict of numbers (a damaged file) are left out."""
    try:
        answers = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(answers, dict):
        return {}
    return {key: value for key, value in answers.items() if isinstance(value, dict)}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
