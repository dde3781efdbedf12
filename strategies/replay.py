"""Experience replay: a fixed-size buffer of earlier tasks' training examples, mixed into every batch.

``ratio`` is the exact share of each batch that is replayed: round(ratio * batch_size) examples of every planned
batch are replaced by buffer examples, so the stage keeps the same steps and batch size as naive fine-tuning. The
buffer holds ``buffer_size`` examples chosen by reservoir sampling over everything seen (``policy: reservoir``) or
an equal quota per earlier task (``policy: quota``). ``general_ratio`` replays general English text (the
strategies' split, disjoint from the probe's) the same way, from the first stage on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from continual.errors import ContinualError
from strategies.base import Strategy


@dataclass
class ReplayOptions:
    ratio: float = field(default=0.25, metadata={"help": "share of each batch taken from the buffer (0..1)"})
    buffer_size: int = field(default=200, metadata={"help": "examples kept from earlier tasks"})
    policy: str = field(default="reservoir", metadata={"help": "reservoir or quota (equal share per task)"})
    general_ratio: float = field(default=0.0, metadata={"help": "share of each batch of general English text"})
    general_pool: int = field(default=500, metadata={"help": "general-text passages to draw from"})

    def __post_init__(self):
        if not 0 <= self.ratio <= 1 or not 0 <= self.general_ratio <= 1 or self.ratio + self.general_ratio > 1:
            raise ContinualError("replay ratio and general_ratio must lie in [0, 1] and sum to at most 1")
        if self.policy not in ("reservoir", "quota"):
            raise ContinualError(f"replay policy must be reservoir or quota, got '{self.policy}'")
        if self.buffer_size <= 0:
            raise ContinualError(f"replay buffer_size must be positive, got {self.buffer_size}")


class Replay(Strategy):
    name = "replay"
    Config = ReplayOptions

    def __init__(self, config=None):
        super().__init__(config)
        self.buffer: list[dict] = []  # example dicts, each with its "task"
        self.seen = 0  # examples offered to the reservoir so far
        self.per_task: dict[str, list[dict]] = {}

    def mix_batches(self, batches, ctx):
        rng = random.Random(f"replay:{ctx.seed}:{ctx.index}")
        k_past = round(self.config.ratio * ctx.batch_size) if self.buffer else 0
        k_general = round(self.config.general_ratio * ctx.batch_size)
        general = []
        if k_general:
            from continual.probes.general_text import general_examples
            general = general_examples(ctx.general_source, self.config.general_pool, seed=ctx.seed).to_list()
        mixed = []
        for batch in batches:
            keep = batch[:len(batch) - k_past - k_general]
            mixed.append(keep + [rng.choice(self.buffer) for _ in range(k_past)]
                         + [rng.choice(general) for _ in range(k_general)])
        return mixed

    def after_stage(self, model, ctx):
        rng = random.Random(f"replay-buffer:{ctx.seed}:{ctx.index}")
        examples = [{**row, "task": ctx.task.name} for row in ctx.task.train.to_list()]
        size = self.config.buffer_size
        if self.config.policy == "reservoir":
            for example in examples:  # Vitter's algorithm R over the whole stream of examples
                self.seen += 1
                if len(self.buffer) < size:
                    self.buffer.append(example)
                else:
                    j = rng.randrange(self.seen)
                    if j < size:
                        self.buffer[j] = example
        else:
            self.per_task[ctx.task.name] = rng.sample(examples, min(size, len(examples)))
            quota = size // len(self.per_task)
            self.buffer = [e for kept in self.per_task.values() for e in kept[:quota]]

    def state_dict(self):
        return {"buffer": self.buffer, "seen": self.seen, "per_task": self.per_task}

    def load_state_dict(self, state, model):
        self.buffer, self.seen, self.per_task = state["buffer"], state["seen"], state["per_task"]
