"""Experience replay: a fixed-size buffer of earlier tasks' training examples, mixed into every batch.

``ratio`` is the exact share of each batch that is replayed: round(ratio * batch_size) examples of every planned
batch are replaced by buffer examples, so the stage keeps the same steps and batch size as naive fine-tuning. The
buffer (strategies.memory) holds ``buffer_size`` examples chosen by reservoir sampling over everything seen
(``policy: reservoir``) or an equal quota per earlier task (``policy: quota``). ``general_ratio`` replays general English text (the
strategies' split, disjoint from the probe's) the same way, from the first stage on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from continual.errors import ContinualError
from continual.options import Options, option
from strategies.base import Strategy
from strategies.memory import EpisodicMemory


@dataclass
class ReplayOptions(Options):
    ratio: float = option(0.25, "share of each batch taken from the buffer", low=0, high=1)
    buffer_size: int = option(200, "examples kept from earlier tasks", low=1)
    policy: str = option("reservoir", "reservoir, or quota (an equal share per task)", choices=("reservoir", "quota"))
    general_ratio: float = option(0.0, "share of each batch of general English text", low=0, high=1)
    general_pool: int = option(500, "general-text passages to draw from", low=1)

    def check(self):
        if self.ratio + self.general_ratio > 1:
            raise ContinualError(f"replay ratio ({self.ratio}) and general_ratio ({self.general_ratio}) must sum to "
                                 "at most 1")


class Replay(Strategy):
    name = "replay"
    Config = ReplayOptions
    packing_safe = True  # it replaces whole examples before collation

    def __init__(self, config=None):
        super().__init__(config)
        self.memory = EpisodicMemory(self.config.buffer_size, self.config.policy, key="replay")

    @property
    def buffer(self) -> list[dict]:
        return self.memory.examples

    def mix_batches(self, batches, ctx):
        rng = random.Random(f"replay:{ctx.seed}:{ctx.index}")
        k_past = round(self.config.ratio * ctx.batch_size) if self.buffer else 0
        k_general = round(self.config.general_ratio * ctx.batch_size)
        general = []
        if k_general:
            from continual.probes.general_text import general_examples
            general = [{**e, "task": None} for e in  # no task: general text, not an earlier task's example
                       general_examples(ctx.general_source, self.config.general_pool, seed=ctx.seed).to_list()]
        mixed = []
        for batch in batches:
            keep = batch[:len(batch) - k_past - k_general]
            mixed.append(keep + [rng.choice(self.buffer) for _ in range(k_past)]
                         + [rng.choice(general) for _ in range(k_general)])
        return mixed

    def after_stage(self, model, ctx):
        self.memory.add_task(ctx.task, ctx.seed, ctx.index)

    def state_dict(self):
        return self.memory.state_dict()

    def load_state_dict(self, state, model):
        self.memory.load_state_dict(state)
