"""Experience replay: a fixed-size buffer of earlier tasks' training examples, mixed into every batch.

``ratio`` is the replayed share of the stage's examples, kept exact over the stage by carrying the remainder: after
the first s planned batches (N_s examples) floor(ratio * N_s + 0.5) examples in all have been replaced by buffer
examples, so at every step, and over the whole stage, the replayed count is within half an example of ratio * N_s
(0.1 of batches of 4 replays 1 example in every 2nd or 3rd batch, not round(0.4) = 0 in each). The replaced
examples are the tail of each planned batch, so the stage keeps the same steps and batch size as naive fine-tuning.
The buffer (strategies.memory) holds ``buffer_size`` examples chosen by reservoir sampling over everything trained
(``policy: reservoir``) or an equal quota per earlier task (``policy: quota``), offered only the examples of the
task that the stage actually trained (the kept part of its batches): with steps x batch below the training set's
size, the rest were never seen and are not "replayed". ``general_ratio`` replays general English text (the
strategies' split, disjoint from the probe's) the same way, from the first stage on.
"""

from __future__ import annotations

import json
import math
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
        self.trained: dict[int, list[dict]] = {}  # stage -> its own examples left in its batches (mix_batches)

    @property
    def buffer(self) -> list[dict]:
        return self.memory.examples

    def mix_batches(self, batches, ctx):
        """Replace the tail of each batch: k_s = floor(r N_s + 0.5) - (replayed so far) buffer examples at step s,
        N_s the examples of batches 0..s, r the ratio (the same for general text, within what the batch has
        left). Records which of the stage's own examples stay in the batches (those are what after_stage offers the
        buffer)."""
        rng = random.Random(f"replay:{ctx.seed}:{ctx.index}")
        past_ratio = self.config.ratio if self.buffer else 0.0
        general = []
        if self.config.general_ratio:
            from continual.probes.general_text import general_examples
            general = [{**e, "task": None} for e in  # no task: general text, not an earlier task's example
                       general_examples(ctx.general_source, self.config.general_pool, seed=ctx.seed).to_list()]
        mixed, trained = [], []
        total = past_done = general_done = 0
        for batch in batches:
            total += len(batch)
            k_past = carried_share(past_ratio, total) - past_done
            k_general = min(carried_share(self.config.general_ratio, total) - general_done, len(batch) - k_past)
            keep = batch[:len(batch) - k_past - k_general]
            mixed.append(keep + [rng.choice(self.buffer) for _ in range(k_past)]
                         + [rng.choice(general) for _ in range(k_general)])
            past_done, general_done = past_done + k_past, general_done + k_general
            # the stage's own examples (not another part's replayed or general ones, which carry another task)
            trained += [e for e in keep if e.get("task", ctx.task.name) == ctx.task.name]
        self.trained[ctx.index] = trained
        return mixed

    def after_stage(self, model, ctx):
        """Offer the buffer the task's examples that this stage trained on, in the training set's order (all of
        them when mix_batches did not run for this stage: a direct call)."""
        trained = self.trained.pop(ctx.index, None)
        examples = None
        if trained is not None:
            seen = {_identity(e) for e in trained}
            examples = [row for row in ctx.task.train.to_list() if _identity(row) in seen]
        self.memory.add_task(ctx.task, ctx.seed, ctx.index, examples=examples)

    def state_dict(self):
        return self.memory.state_dict()

    def load_state_dict(self, state, model):
        self.memory.load_state_dict(state)


def carried_share(ratio: float, examples: int) -> int:
    """floor(ratio * examples + 0.5): the examples replayed in all once ``examples`` have been planned."""
    return math.floor(ratio * examples + 0.5)


def _identity(example: dict) -> str:
    return json.dumps({k: v for k, v in example.items() if k != "task"}, sort_keys=True, default=str)
