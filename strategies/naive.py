"""Naive sequential fine-tuning: every parameter trained on each task in turn, nothing protects the past.

The lower bound every other strategy is measured against; all of its behaviour is the base hooks' (no-ops).
"""

from strategies.base import Strategy


class Naive(Strategy):
    name = "naive"
    alone = "naive is the absence of a strategy"
    packing_safe = True
