"""Model merging across stages: after each stage (from the second on), the new weights are merged with the previous
stage's, as task vectors from the original model theta_0 (Ilharco et al. 2023, "Editing Models with Task
Arithmetic"):

    tau_prev = theta_prev - theta_0,  tau_new = theta_new - theta_0,  theta <- theta_0 + merge(tau_prev, tau_new)

    linear      (1 - alpha) tau_prev + alpha tau_new: linear interpolation of the two models' weights (model soups,
                Wortsman et al. 2022; WiSE-FT's interpolation with the previous model)
    ties        TIES-merging (Yadav et al. 2023): keep each task vector's top ``density`` share of entries by
                magnitude, elect every entry's sign by the total weighted mass, average the weighted entries that agree
    dare_linear DARE (Yu et al. 2024): drop each entry with probability 1 - density, rescale by 1 / density, then
                linear; dare_ties: DARE's dropping, then TIES's sign election

with weights (1 - alpha, alpha) and peft's implementations (peft.utils.merge_utils). DARE's random masks are drawn
from torch's generator seeded by (seed, stage): a run repeats, and every data-parallel process draws the same. The
model's own weights are what is merged (full fine-tuning; with an adapter use lora-merge).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft.utils import merge_utils

from continual.options import Options, option
from strategies.base import BASE_WEIGHTS, Strategy, trainable_parameters

METHODS = ("linear", "ties", "dare_linear", "dare_ties")


@dataclass
class MergeOptions(Options):
    method: str = option("linear", "how the two task vectors are merged", choices=METHODS)
    alpha: float = option(0.5, "weight of the new stage's task vector; the previous model's gets 1 - alpha", low=0,
                          high=1)
    density: float = option(0.5, "ties/dare: share of each task vector's entries kept", low=0, low_open=True, high=1)
    majority_sign: str = option("total", "ties: the sign of the summed mass (total) or of the count (frequency)",
                                choices=("total", "frequency"))


def merge_vectors(previous: torch.Tensor, new: torch.Tensor, options: MergeOptions) -> torch.Tensor:
    """The merged task vector of one parameter tensor (peft.utils.merge_utils for ties and dare)."""
    weights = torch.tensor([1 - options.alpha, options.alpha], dtype=new.dtype, device=new.device)
    tensors = [previous, new]
    if options.method == "linear":
        return merge_utils.task_arithmetic(tensors, weights)
    if options.method == "ties":
        return merge_utils.ties(tensors, weights, options.density, options.majority_sign)
    if options.method == "dare_linear":
        return merge_utils.dare_linear(tensors, weights, options.density)
    return merge_utils.dare_ties(tensors, weights, options.density, options.majority_sign)


class Merge(Strategy):
    name = "merge"
    Config = MergeOptions
    needs = frozenset({BASE_WEIGHTS})
    packing_safe = True

    def setup(self, model):
        self.original = {n: p.detach().clone() for n, p in trainable_parameters(model).items()}
        return model

    def before_stage(self, model, ctx):
        self.previous = {n: p.detach().clone() for n, p in trainable_parameters(model).items()}

    @torch.no_grad()
    def after_stage(self, model, ctx):
        if ctx.index == 0:
            return  # the first stage has no earlier stage to merge with
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed * 1000 + ctx.index)
            for n, p in trainable_parameters(model).items():
                base = self.original[n]
                merged = merge_vectors(self.previous[n] - base, p.detach() - base, self.config)
                p.copy_(base + merged)
        self.previous = {}
