"""LoRA merging: a fresh adapter per task, as lora-isolation trains them, then after every stage one adapter merged
from all the trained ones with peft's ``add_weighted_adapter``, which every task is scored with: no oracle task id
at inference. Merging: ``combination`` is any of peft's combination types (cat: the exact weighted sum of the
adapters' updates; linear, ties, dare_linear, dare_ties: peft combines their A and B matrices separately; the
*_svd variants merge the full per-layer updates and compress them back to the rank by SVD; TIES: Yadav et al. 2023,
DARE: Yu et al. 2024), each adapter weighted by 1/n (``weights: mean``) or 1 (``sum``, task arithmetic). DARE's
masks come from torch's generator seeded by (seed, stage).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from continual.options import option
from strategies.lora import LoraOptions
from strategies.lora_isolation import LoraIsolation, adapter_name

MERGED = "merged"
COMBINATIONS = ("cat", "linear", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd",
                "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd")


@dataclass
class LoraMergeOptions(LoraOptions):
    combination: str = option("cat", "peft's combination_type for add_weighted_adapter", choices=COMBINATIONS)
    weights: str = option("mean", "each adapter's weight: mean (1/n) or sum (1)", choices=("mean", "sum"))
    density: float = option(0.5, "ties/dare/magnitude_prune: share of entries kept", low=0, low_open=True, high=1)
    majority_sign: str = option("total", "ties: sign election by total mass or by frequency",
                                choices=("total", "frequency"))


class LoraMerge(LoraIsolation):
    name = "lora-merge"
    Config = LoraMergeOptions

    @torch.no_grad()
    def merge(self, model, seed: int, stage: int) -> None:
        """(Re)build the merged adapter from every trained task adapter."""
        if MERGED in model.peft_config:
            model.delete_adapter(MERGED)
        names = [adapter_name(i) for i in self.trained]
        weight = 1.0 / len(names) if self.config.weights == "mean" else 1.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + stage)
            model.add_weighted_adapter(names, [weight] * len(names), MERGED, combination_type=self.config.combination,
                                       density=self.config.density, majority_sign_method=self.config.majority_sign)

    def after_stage(self, model, ctx):
        super().after_stage(model, ctx)
        self.merge(model, ctx.seed, ctx.index)
        self.seed = ctx.seed

    @contextmanager
    def eval_model(self, model, task_index):
        if MERGED not in model.peft_config:
            with model.disable_adapter():
                yield model
            return
        active = model.active_adapter
        model.set_adapter(MERGED)
        try:
            yield model
        finally:
            model.set_adapter(active)

    def probe_model_note(self) -> str:
        return "the base with the adapter merged from every task's adapter"

    def state_dict(self):
        return {**super().state_dict(), "seed": getattr(self, "seed", 0)}

    def load_state_dict(self, state, model):
        super().load_state_dict(state, model)
        if self.trained:  # the checkpoint holds the merged adapter's weights too: recreate it
            self.seed = state["seed"]
            self.merge(model, self.seed, self.trained[-1])
