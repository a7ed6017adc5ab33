"""Training strategies, registered by name; each built-in one is a module of this package.

    from transferlab.train.strategies import get_strategy, strategy_names
    get_strategy("finetune").recipes["seed"]   # Defaults(epochs=4, lr=1e-05)
"""

# Each module registers its strategy on import, in this order: the notebook's three, then ours.
from . import scratch  # noqa: F401, I001
from . import frozen  # noqa: F401
from . import finetune  # noqa: F401
from . import gradual  # noqa: F401
from .registry import (
    RECIPE_NAMES,
    Defaults,
    Stage,
    Strategy,
    StrategyError,
    Unfreeze,
    UnknownStrategyError,
    costs,
    get_strategy,
    lineage,
    order,
    plan,
    register,
    strategy_names,
)

__all__ = [
    "RECIPE_NAMES", "Defaults", "Stage", "Strategy", "StrategyError", "Unfreeze", "UnknownStrategyError", "costs", "get_strategy", "lineage", "order", "plan",
    "register", "strategy_names",
]
