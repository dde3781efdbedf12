"""LoRA: one low-rank adapter (peft) trained on through all stages; the base weights stay frozen.

The setting of Biderman et al. 2024, "LoRA learns less and forgets less". The exported model is the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peft import LoraConfig, get_peft_model

from strategies.base import Strategy


@dataclass
class LoraOptions:
    r: int = field(default=16, metadata={"help": "adapter rank"})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the adapter input"})
    target_modules: str = field(default="all-linear", metadata={
        "help": "comma-separated module names to adapt, or 'all-linear' (every linear layer but the output head)"})

    def peft_config(self) -> LoraConfig:
        targets = "all-linear" if self.target_modules == "all-linear" else \
            [m.strip() for m in self.target_modules.split(",")]
        return LoraConfig(task_type="CAUSAL_LM", r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=targets)


class Lora(Strategy):
    name = "lora"
    Config = LoraOptions
    default_lr = 5e-4  # adapters need a larger step than full fine-tuning

    def setup(self, model):
        return get_peft_model(model, self.config.peft_config())
