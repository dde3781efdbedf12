"""A-GEM (Chaudhry et al. 2019, "Efficient Lifelong Learning with A-GEM"): keep an episodic memory of earlier tasks'
examples (strategies.memory, as replay keeps) and, at every step, compute the reference gradient g_ref of the loss on
a batch drawn from it. Where the step's gradient g points against it (g . g_ref < 0), project:

    g <- g - (g . g_ref / g_ref . g_ref) g_ref

so that, to first order, the step does not increase the memory's average loss; otherwise g is left as it is. The
projection runs in ``after_backward`` on the complete gradients of every trainable parameter (full fine-tuning or
an adapter), after data-parallel all-reduce: the memory batch's backward goes through the same DDP model, each
process taking its share of the memory batch, so g_ref is the whole memory batch's gradient on every process.
Costs one extra forward/backward on ``memory_batch`` examples per step. Logs ``agem_projected`` (1 when the step
was projected) and ``agem_dot`` (g . g_ref before projection).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from datasets import Dataset

from continual import distributed
from continual.errors import ContinualError
from continual.options import Options, option
from continual.training import CompletionCollator, tokenize_completions
from strategies.base import Strategy
from strategies.memory import EpisodicMemory


@dataclass
class AGEMOptions(Options):
    memory_size: int = option(200, "examples kept from earlier tasks", low=1)
    memory_batch: int = option(8, "memory examples per reference gradient (each step draws a new batch)", low=1)
    policy: str = option("reservoir", "reservoir, or quota (an equal share per task)", choices=("reservoir", "quota"))


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.reshape(-1), b.reshape(-1)))


def project(grads: list[torch.Tensor], reference: list[torch.Tensor]) -> tuple[float, bool]:
    """Project ``grads`` in place onto the half-space g . g_ref >= 0 (A-GEM); returns (g . g_ref before, whether it
    projected). The dot products of each tensor are summed in float64."""
    dot = sum(_dot(g, r) for g, r in zip(grads, reference))
    if dot >= 0:
        return dot, False
    norm = sum(_dot(r, r) for r in reference)
    if norm == 0:
        return dot, False
    for g, r in zip(grads, reference):
        g.sub_(r, alpha=dot / norm)
    return dot, True


class AGEM(Strategy):
    name = "agem"
    Config = AGEMOptions
    packing_safe = True  # the hooks read the gradients, and collate the memory batch themselves

    def __init__(self, config=None):
        super().__init__(config)
        self.memory = EpisodicMemory(self.config.memory_size, self.config.policy, key="agem")
        self.encoded = None

    def before_stage(self, model, ctx):
        n = distributed.world_size()
        if self.config.memory_batch % n:
            raise ContinualError(f"agem.memory_batch {self.config.memory_batch} does not split over {n} processes; "
                                 f"use a multiple of {n}")
        self.encoded = None
        if len(self.memory):
            data = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]}
                                      for e in self.memory.examples])
            self.encoded = tokenize_completions(data, ctx.tokenizer, ctx.max_length).to_list()
            self.collate = CompletionCollator(ctx.tokenizer.pad_token_id)
        self.rng = random.Random(f"agem:{ctx.seed}:{ctx.index}")

    def memory_batch(self) -> dict:
        """This process's share of a memory batch: every process draws the same batch (same RNG), each takes its
        consecutive slice, as the trainer splits a planned batch."""
        rows = [self.encoded[self.rng.randrange(len(self.encoded))] for _ in range(self.config.memory_batch)]
        share = self.config.memory_batch // distributed.world_size()
        start = distributed.rank() * share
        return self.collate(rows[start:start + share])

    def after_backward(self, model, inputs, step):
        if not self.encoded:
            return None
        params = [p for p in model.parameters() if p.requires_grad]
        grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
        for p in params:
            if p.grad is not None:
                p.grad.zero_()
        step.backward(self.memory_batch())
        reference = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        dot, projected = project(grads, reference)
        for p, g in zip(params, grads):  # the (projected) step gradient replaces the reference one
            p.grad = g
        step.log("agem_projected", float(projected))
        step.log("agem_dot", dot)
        return None

    def after_stage(self, model, ctx):
        self.memory.add_task(ctx.task, ctx.seed, ctx.index)
        self.encoded = None

    def state_dict(self):
        return self.memory.state_dict()

    def load_state_dict(self, state, model):
        self.memory.load_state_dict(state)
