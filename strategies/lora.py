"""LoRA: one low-rank adapter (peft) trained on through all stages; the base weights stay frozen.

The setting of Biderman et al. 2024, "LoRA learns less and forgets less". The exported model is the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model

from continual.errors import ContinualError
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


def linear_kinds() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D
    return torch.nn.Linear, Conv1D  # Conv1D: GPT-2's linear layers


def linear_module_names(model: torch.nn.Module, kinds: tuple[type, ...] | None = None) -> list[str]:
    """The names (last component, as target_modules takes them) of the model's linear layers, the output head
    left out."""
    kinds = kinds or linear_kinds()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return list(dict.fromkeys(name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                              if isinstance(module, kinds) and module is not head and name))


def check_targets(model: torch.nn.Module, target_modules: str, option_name: str,
                  kinds: tuple[type, ...] | None = None) -> None:
    """Refuse, before the run writes anything, target module names that match no linear layer of the model (peft
    would stop with NoMatchingPeftModuleError, or silently skip a misspelt one among others). ``kinds``: the layer
    types the adapter method supports (LoRA: nn.Linear and Conv1D)."""
    kinds = kinds or linear_kinds()
    available = linear_module_names(model, kinds)
    model_name = type(model).__name__
    if not available:
        kind_names = " or ".join(k.__name__ for k in kinds)
        raise ContinualError(f"{option_name}: {model_name} has no {kind_names} layers for this strategy to adapt "
                             f"(its linear layers: {', '.join(linear_module_names(model)) or 'none'}); use another "
                             "strategy")
    if target_modules.strip() == "all-linear":
        return
    names = [m.strip() for m in target_modules.split(",") if m.strip()]
    layers = [name for name, module in model.named_modules() if isinstance(module, kinds)]
    unmatched = [t for t in names if not any(n == t or n.endswith("." + t) for n in layers)]
    if unmatched or not names:
        raise ContinualError(f"{option_name}={target_modules!r}: {', '.join(unmatched) or 'no name'} matches no "
                             f"linear layer of {model_name}; its linear modules are: {', '.join(available)} "
                             "(or all-linear)")
