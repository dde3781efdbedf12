"""Orthogonal subspace fine-tuning with peft's OSF tuner (peft.tuners.osf), stage by stage.

For every adapted weight W = U S V^T, OSF freezes the top ``effective_rank`` singular directions and trains only
the remaining ones (their U, S, V factors), with gradient hooks that keep the update off the frozen directions.
A multi-stage run: each stage wraps the current weights in a fresh OSF adapter, trains it, and merges it into the
weights after the stage (peft's merge_and_unload); the next stage's SVD is of the merged weights, with a larger
frozen share (``effective_rank`` + stage x ``rank_growth``, a fraction of each weight's smaller dimension).

What differs from O-LoRA: O-LoRA keeps every task's low-rank update as its own adapter and penalises overlap
between the tasks' input subspaces; OSF protects the weights' dominant singular directions (recomputed after every
stage, so they are not guaranteed to contain the previous task's update), trains full-rank in the rest, and keeps
one merged model. peft's hooks project the gradient, but AdamW's per-element scaling moves the update back into
the frozen subspace (about 15-20 % of it on a tiny Llama, measured while building this): ``reproject`` (on by
default) projects the trainable factors back after every optimizer step, so the update stays orthogonal.

The default learning rate is a quarter of full fine-tuning's: one AdamW step at the same lr moves the weights
about 3.6x farther through the factors than through the weights themselves, and at naive's 1e-4 ten steps on a
one-token-label task multiplied general-text perplexity by 7-19 (sentiment; 1.05-1.07 at 2.5e-5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import OSFConfig, get_peft_model

from continual.options import Options, option
from strategies.base import BASE_WEIGHTS, MODEL_WRAPPER, Strategy


@dataclass
class OSFOptions(Options):
    effective_rank: float = option(0.5, "share of each weight's singular directions frozen in the first stage",
                                   low=0, low_open=True, high=0.95)
    rank_growth: float = option(0.1, "share added to the frozen part at every later stage (capped at 0.95)", low=0,
                                high=0.9)
    target_modules: str = option("all-linear", "comma-separated module names to adapt, or 'all-linear'")
    reproject: bool = option(True, "project the trained factors back off the frozen subspace after every "
                             "optimizer step (AdamW undoes the gradient projection otherwise)")


def osf_layers(model):
    return [m for m in model.modules() if hasattr(m, "osf_svd_params")]


@torch.no_grad()
def reproject(layer, adapter: str = "default") -> None:
    """Make the layer's trainable U and V factors orthogonal to its frozen singular directions again."""
    p = layer.osf_svd_params[adapter]
    if adapter in layer._osf_U_high:
        high = layer._osf_U_high[adapter]
        p["U_low"].sub_(high @ (high.T @ p["U_low"]))
    else:  # a square factor: keep it in the span of its own initial directions
        low = layer._osf_U_low_init[adapter]
        p["U_low"].copy_(low @ (low.T @ p["U_low"]))
    if adapter in layer._osf_V_high:
        high = layer._osf_V_high[adapter]
        p["V_low"].sub_((p["V_low"] @ high.T) @ high)
    else:
        low = layer._osf_V_low_init[adapter]
        p["V_low"].copy_((p["V_low"] @ low.T) @ low)


class OSF(Strategy):
    name = "osf"
    Config = OSFOptions
    # AdamW moves each trained element about lr per step; on the U, S, V factors that moves W about 3.6x as far as
    # the same lr on W does (the default model, one step; test_strategy_osf), so a quarter of naive's 1e-4
    default_lr = 2.5e-5
    claims = frozenset({MODEL_WRAPPER})
    removes = frozenset({BASE_WEIGHTS})
    packing_safe = True

    def __init__(self, config=None):
        super().__init__(config)
        self.wrapper = None  # peft's wrapper of the current stage's adapter (the model itself is adapted in place)
        self.stages_done = 0

    def frozen_share(self, stage: int) -> float:
        return min(0.95, self.config.effective_rank + stage * self.config.rank_growth)

    def _wrap(self, model, stage: int) -> None:
        targets = "all-linear" if self.config.target_modules == "all-linear" else \
            [m.strip() for m in self.config.target_modules.split(",")]
        # peft replaces the targeted layers inside ``model`` itself: the runner keeps training the same object
        self.wrapper = get_peft_model(model, OSFConfig(effective_rank=self.frozen_share(stage),
                                                       target_modules=targets))

    def check_model(self, model):
        from strategies.lora import check_targets
        # peft's OSF replaces nn.Linear layers only: GPT-2's Conv1D ones would be skipped, leaving nothing to train
        check_targets(model, self.config.target_modules, f"{self.name}.target_modules", (torch.nn.Linear,))

    def setup(self, model):
        self._wrap(model, 0)
        return model

    def before_stage(self, model, ctx):
        if self.wrapper is None:
            self._wrap(model, ctx.index)

    def after_optimizer_step(self, model):
        if self.config.reproject:
            for layer in osf_layers(model):
                reproject(layer)

    def after_stage(self, model, ctx):
        self.wrapper.merge_and_unload()  # the stage's update into the weights; the next stage re-decomposes them
        self.wrapper = None
        self.stages_done = ctx.index + 1

    def state_dict(self):
        return {"stages_done": self.stages_done}

    def load_state_dict(self, state, model):
        # the checkpoint holds merged weights (no adapter): undo set-up's adapter so that they load
        if self.wrapper is not None:
            self.wrapper.unload()
            self.wrapper = None
        self.stages_done = state["stages_done"]
