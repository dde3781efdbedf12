"""An episodic memory of earlier tasks' training examples, for the strategies that keep one (replay, A-GEM).

``reservoir``: Vitter's algorithm R over every example offered so far, so each seen example is kept with equal
probability; ``quota``: an equal share of the memory per task seen. Each kept example dict carries its ``task``.
Which examples are kept depends only on the run's seed and the stage (``random.Random`` keyed by them).
"""

from __future__ import annotations

import random


class EpisodicMemory:
    def __init__(self, size: int, policy: str = "reservoir", key: str = "memory"):
        self.size, self.policy, self.key = size, policy, key
        self.examples: list[dict] = []
        self.seen = 0  # examples offered to the reservoir so far
        self.per_task: dict[str, list[dict]] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def add_task(self, task, seed: int, stage: int, examples: list[dict] | None = None) -> None:
        """Offer ``examples`` of ``task`` (after its stage): the ones it trained on; default every training
        example."""
        rng = random.Random(f"{self.key}-buffer:{seed}:{stage}")
        rows = task.train.to_list() if examples is None else examples
        examples = [{**row, "task": task.name} for row in rows]
        if self.policy == "reservoir":
            for example in examples:
                self.seen += 1
                if len(self.examples) < self.size:
                    self.examples.append(example)
                else:
                    j = rng.randrange(self.seen)
                    if j < self.size:
                        self.examples[j] = example
        else:
            self.per_task[task.name] = rng.sample(examples, min(self.size, len(examples)))
            quota = self.size // len(self.per_task)
            self.examples = [e for kept in self.per_task.values() for e in kept[:quota]]

    def state_dict(self) -> dict:
        return {"buffer": self.examples, "seen": self.seen, "per_task": self.per_task}

    def load_state_dict(self, state: dict) -> None:
        self.examples, self.seen, self.per_task = state["buffer"], state["seen"], state["per_task"]
