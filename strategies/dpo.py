"""DPO (Rafailov et al. 2023) stages with trl's DPOTrainer on (prompt, chosen, rejected) pairs built from each task.

Facts: chosen is the true relation, rejected the false one (as in seed 001). The reference model is the model as it
was before the stage, passed explicitly: a frozen copy for a fully trained model (trl would otherwise reload the
stale original from disk), and for a LoRA model trl's frozen copy of the current adapter ("ref"), removed again
after the stage. Combines with lora and ewc; not with distill or lora-isolation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from continual.errors import ContinualError
from strategies.base import Strategy
from strategies.distill import frozen_copy


@dataclass
class DPOOptions:
    beta: float = field(default=0.1, metadata={"help": "DPO temperature beta (strength of the reference anchor)"})
    loss_type: str = field(default="sigmoid", metadata={"help": "trl DPO loss type (sigmoid, ipo, hinge, ...)"})

    def __post_init__(self):
        if self.beta <= 0:
            raise ContinualError(f"dpo beta must be positive, got {self.beta}")


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


class DPO(Strategy):
    name = "dpo"
    Config = DPOOptions
    trainer = "dpo"
    default_lr = 5e-5

    def reference_model(self, model):
        """What DPOTrainer gets as ref_model: None for a PEFT model (trl copies the adapter), else a frozen copy."""
        return None if is_peft(model) else frozen_copy(model)

    def after_stage(self, model, ctx):
        if is_peft(model) and "ref" in model.peft_config:
            model.delete_adapter("ref")
