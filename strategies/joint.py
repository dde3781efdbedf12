"""Joint training: a reference, not a continual strategy. One stage trains every task of the stream at once
(their training sets pooled and shuffled, for as many steps as all stages together), then every task is scored.

It is the upper bound that intransigence and the plots compare against. Its matrix has rows ``base`` and
``joint``; ACC is the mean of the ``joint`` row, and BWT, FWT and forgetting do not apply (reported as null).
"""

from datasets import concatenate_datasets

from continual.streams import Task
from strategies.base import Stage, Strategy


class Joint(Strategy):
    name = "joint"
    alone = "joint is a reference, not a continual strategy"
    reference = True
    packing_safe = True

    def stage_plan(self, stream, steps):
        # tasks of different formats may hold different extra columns: pool the ones every task has
        shared = [c for c in stream.tasks[0].train.column_names
                  if all(c in t.train.column_names for t in stream.tasks)]
        pooled = Task(name="joint", train=concatenate_datasets([t.train.select_columns(shared) for t in stream.tasks]),
                      eval=stream.tasks[0].eval, matrix_split=stream.tasks[0].matrix_split,
                      description="all tasks of the stream")
        return [Stage("joint", pooled, steps * len(stream.tasks), len(stream.tasks) - 1)]
