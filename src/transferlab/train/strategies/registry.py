"""The strategy registry: a strategy is an entry of data and small functions, registered by name.

Registering only records (a second entry under one name is an error); `get_strategy` looks an entry up and
names the registered ones when it is not there. Each built-in strategy lives in its own module of this package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal, Mapping

if TYPE_CHECKING:
    import lightning as L
    import torch

    from ...models.classifier import Classifier
    from ...models.freezing import FreezeSummary

RECIPE_NAMES = ("seed", "quick", "auto")
"""`seed`: the notebook's epochs and learning rates; `quick`: a few epochs each, for a CPU; `auto`: fitted to the
data (`train.recipe`), these defaults being where its search starts or what it falls back to."""


class StrategyError(ValueError):
    """Strategies asked for in a way that cannot work (e.g. one listed before the strategy it continues)."""


class UnknownStrategyError(StrategyError):
    """A strategy name that is not registered; the message lists the registered ones."""


@dataclass(frozen=True)
class Defaults:
    """A strategy's epochs and learning rate in one recipe."""

    epochs: int
    lr: float


@dataclass(frozen=True)
class Unfreeze:
    """What the user asked to unfreeze (None: the strategy's own default)."""

    layers: int | None = None
    """The backbone's last N weight layers."""
    blocks: int | None = None
    """The backbone's last K timm blocks (or, for strategies that unfreeze by stage, K stages)."""


def single_group(model: Classifier, lr: float) -> list[dict]:
    """Every parameter that trains, at `lr`."""
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """No schedule: the learning rate stays where the optimiser starts it (the notebook's)."""
    return None


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.1) -> torch.optim.lr_scheduler.LRScheduler:
    """Per step: linear warmup over the first `warmup` share of steps, then cosine decay to zero."""
    import torch

    warmup_steps = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per step: Smith's one-cycle policy — up from a 25th of each group's rate to the rate over the first 30 % of
    the steps, then cosine down to a 10,000th of the start, with Adam's beta1 moving the other way."""
    import torch

    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], total_steps=max(1, total_steps))


def adam(params: list, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam, as the notebook; AdamW (decoupled weight decay) when there is a `weight_decay`."""
    import torch

    if weight_decay:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr)


SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler | None]] = {
    "constant": constant, "cosine": warmup_cosine, "onecycle": one_cycle,
}
"""`--schedule`'s choices: per-step learning-rate schedules over a stage's total steps."""


def no_callbacks(model: Classifier, unfreeze: Unfreeze) -> list[L.Callback]:
    return []


@dataclass(frozen=True)
class Strategy:
    """One way to train: what trains, with which optimiser groups and schedule, from what, at what cost."""

    name: str
    summary: str
    """One line for --help and the report."""
    pretrained: bool
    """Starts from the backbone's pretrained weights (scratch: random initialisation)."""
    trains: Literal["all", "head", "head+last"]
    """Everything, the head only, or the head plus some of the backbone's last layers (the rest runs frozen, in a
    fast runtime where one is installed)."""
    batchnorm: Literal["train", "frozen"]
    cost: int
    """Relative cost per epoch: between strategies that are not significantly different, the cheaper is advised."""
    recipes: Mapping[str, Defaults]
    """Epochs and learning rate per recipe (`RECIPE_NAMES`)."""
    apply: Callable[[Classifier, Unfreeze], FreezeSummary]
    """Set requires_grad for everything that will train during the stage; returns what it left trainable."""
    starts_from: str | None = None
    """The strategy whose trained model this one continues (finetune: frozen); None for a fresh model."""
    feature_cache: bool = False
    """The head alone trains on a frozen backbone: it can train on cached pooled features."""
    param_groups: Callable[[Classifier, float], list[dict]] = single_group
    """The optimiser's parameter groups at a base learning rate (discriminative rates go here)."""
    schedule: str | None = None
    """Its own schedule (a `SCHEDULES` name) in every recipe, or None: the recipe's (`plan`)."""
    callbacks: Callable[[Classifier, Unfreeze], list[L.Callback]] = no_callbacks
    """Lightning callbacks the strategy needs during its stage (e.g. unfreezing over epochs)."""
    unfreezes_during_training: bool = False
    """Some parameters start training after epoch 1: a distributed run must allow unused parameters."""
    notes: tuple[str, ...] = field(default=())
    """Facts worth telling in the report (e.g. its learning rates per group)."""

    def defaults(self, recipe: str) -> Defaults:
        if recipe not in self.recipes:
            raise ValueError(f"recipe {recipe!r}: expected one of {', '.join(RECIPE_NAMES)}")
        return self.recipes[recipe]


_registry: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """File `strategy` under its name; a second strategy of the same name is an error."""
    if strategy.name in _registry:
        raise ValueError(f"a strategy named {strategy.name!r} is already registered")
    missing = [recipe for recipe in RECIPE_NAMES if recipe not in strategy.recipes]
    if missing:
        raise ValueError(f"strategy {strategy.name!r} has no defaults for recipe(s) {', '.join(missing)}")
    _registry[strategy.name] = strategy
    return strategy


def strategy_names() -> list[str]:
    """Registered strategies, in registration order (the notebook's three first)."""
    return list(_registry)


def get_strategy(name: str) -> Strategy:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownStrategyError(f"unknown strategy {name!r}; registered: {', '.join(_registry)}") from None


def costs(names: "list[str] | set[str]") -> dict[str, int]:
    """Relative cost per epoch of the registered strategies among `names` (for `evaluate.diagnose.choose`)."""
    return {name: _registry[name].cost for name in names if name in _registry}


def lineage(name: str) -> list[str]:
    """The strategies a stage of `name` needs, first to last (gradual: frozen, gradual)."""
    chain = [name]
    while (previous := get_strategy(chain[0]).starts_from) is not None:
        chain.insert(0, previous)
    return chain


def order(names: list[str] | tuple[str, ...] | set[str]) -> list[str]:
    """`names` in registration order; names not registered (a run from elsewhere) follow, sorted."""
    known = [name for name in _registry if name in names]
    return known + sorted(set(names) - set(known))


@dataclass(frozen=True)
class Stage:
    """A strategy as one run trains it: epochs, learning rate, schedule and regularisation resolved."""

    strategy: Strategy
    epochs: int
    lr: float
    schedule: str = "constant"
    weight_decay: float = 0.0
    """Decoupled (AdamW); 0: Adam, as the notebook."""
    label_smoothing: float = 0.0
    dropout: float | None = None
    """The head's dropout rate for this stage; None: the model's own (`--dropout`)."""
    patience: int | None = None
    """Early stopping on validation loss after this many epochs without improvement; None: `--early-stop`."""

    @property
    def name(self) -> str:
        return self.strategy.name


def plan(name: str, recipe: str = "seed", epochs: int | None = None, lr: float | None = None, schedule: str = "auto") -> Stage:
    """The stage of strategy `name`: the recipe's epochs and learning rate, unless given; `schedule` "auto": the
    strategy's own, else the notebook's constant rate in the `seed` recipe (fidelity) and warmup + cosine in the
    others (a constant rate kept the quick recipe's fine-tuning oscillating from epoch to epoch)."""
    strategy = get_strategy(name)
    defaults = strategy.defaults(recipe)
    if schedule == "auto":
        schedule = strategy.schedule or ("constant" if recipe == "seed" else "cosine")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r}: expected auto or one of {', '.join(SCHEDULES)}")
    return Stage(strategy, epochs or defaults.epochs, lr or defaults.lr, schedule)
