"""What `--recipe auto` does for each strategy, read from the strategy's data (no PyTorch: `tlab strategies` and
the CLI's help need it); `train.recipe` does it."""

from .strategies.registry import Strategy


def searches_head(strategy: Strategy) -> bool:
    """`--recipe auto` searches this strategy's head on cached features (frozen)."""
    return strategy.feature_cache


def uses_range_test(strategy: Strategy) -> bool:
    """`--recipe auto` trains this strategy at the range test's rate with early stopping (it fine-tunes a pretrained
    backbone on photos)."""
    return strategy.pretrained and strategy.trains != "head"


def auto_summary(strategy: Strategy) -> str:
    """What `--recipe auto` does for `strategy`, in a few words (`tlab strategies`)."""
    defaults = strategy.defaults("auto")
    if searches_head(strategy):
        return "auto: rate, epochs and regularisation searched on the training photos"
    if uses_range_test(strategy):
        return f"auto: the range test's rate, at most {defaults.epochs} epochs with early stopping"
    return f"auto {defaults.epochs} epochs at lr {defaults.lr:g}"
