"""Strategy registry: one module per strategy, each a small class on the hook interface in ``strategies.base``."""

from __future__ import annotations

from continual.errors import ContinualError
from strategies.base import StageContext, Strategy
from strategies.naive import Naive

STRATEGIES: dict[str, tuple[type[Strategy], str]] = {
    "naive": (Naive, "full fine-tuning on each task in turn (the forgetting baseline)"),
}


def make_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ContinualError(f"unknown strategy '{name}'; choose one of: {', '.join(STRATEGIES)} "
                             "(see `continual list`)")
    return STRATEGIES[name][0]()


__all__ = ["STRATEGIES", "StageContext", "Strategy", "make_strategy"]
