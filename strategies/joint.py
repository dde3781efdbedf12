"""Joint training: a reference, not a continual strategy. One stage trains every task of the stream at once
(their training sets pooled and shuffled, for as many steps as all stages together), then every task is scored.

It is the upper bound that intransigence and the plots compare against. Its matrix has rows ``base`` and
``joint``; ACC is the mean of the ``joint`` row, and BWT, FWT and forgetting do not apply (reported as null).
"""

from strategies.base import Strategy


class Joint(Strategy):
    name = "joint"
    joint = True
