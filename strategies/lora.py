"""LoRA: one low-rank adapter (peft) trained on through all stages; the base weights stay frozen.

The setting of Biderman et al. 2024, "LoRA learns less and forgets less". The exported model is the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

from peft import LoraConfig, get_peft_model

from continual.options import Options, option
from strategies.base import BASE_WEIGHTS, MODEL_WRAPPER, Strategy


@dataclass
class LoraOptions(Options):
    r: int = option(16, "adapter rank", low=1)
    alpha: int = option(32, "LoRA scaling numerator (scale = alpha / r)", low=1)
    dropout: float = option(0.0, "dropout on the adapter input", low=0, high=0.99)
    target_modules: str = option("all-linear", "comma-separated module names to adapt, or 'all-linear' (every "
                                 "linear layer but the output head)")

    def peft_config(self) -> LoraConfig:
        targets = "all-linear" if self.target_modules == "all-linear" else \
            [m.strip() for m in self.target_modules.split(",")]
        return LoraConfig(task_type="CAUSAL_LM", r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=targets)


class Lora(Strategy):
    name = "lora"
    Config = LoraOptions
    default_lr = 5e-4  # adapters need a larger step than full fine-tuning
    claims = frozenset({MODEL_WRAPPER})
    removes = frozenset({BASE_WEIGHTS})
    packing_safe = True

    def setup(self, model):
        return get_peft_model(model, self.config.peft_config())
