"""The hook interface every strategy implements (after Avalanche's plugins), and the stage context it sees.

Per run: ``setup(model)`` once on the base model (may wrap it, e.g. LoRA). Per stage i:

    before_stage(model, ctx) -> mix_batches(batches, ctx) -> training, where the trainer adds loss_terms(...)
    to the LM loss at every step -> after_stage(model, ctx)

Evaluation of task j runs inside ``eval_model(model, j)`` (per-task adapters swap there). ``state_dict`` /
``load_state_dict`` carry what a resumed run needs (Fisher, buffers, adapters made so far); ``load_state_dict``
runs on the freshly set-up model before the checkpoint's weights are loaded into it, so it must recreate any
structure (adapters) those weights need.

Each strategy has one config dataclass (trl-style: the config is the documentation); ``--strategy-option
name.field=value`` sets its fields.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass
class StageContext:
    index: int  # 0-based stage number
    task: Any  # continual.streams.Task being trained
    stream: Any  # the whole continual.streams.Stream
    tokenizer: Any
    device: str
    seed: int  # the run's seed
    batch_size: int
    general_source: str  # where general English text comes from (continual.probes.general_text)


@dataclass
class NoOptions:
    """This strategy has no options."""


class Strategy:
    name = "base"
    Config: type = NoOptions
    default_lr = 1e-4  # used when the user gives no --lr
    trainer = "sft"  # "sft" (completion loss, StageTrainer) or "dpo" (trl's DPOTrainer)

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    @property
    def parts(self) -> list[Strategy]:
        """The strategies this one is made of: itself, or a composite's members."""
        return [self]

    def describe(self) -> dict:
        return asdict(self.config)

    def setup(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def before_stage(self, model: torch.nn.Module, ctx: StageContext) -> None:
        pass

    def mix_batches(self, batches: list[list[dict]], ctx: StageContext) -> list[list[dict]]:
        """The stage's planned batches (lists of example dicts), one per optimizer step; may replace examples."""
        return batches

    def loss_terms(self, model, inputs: dict, outputs) -> dict[str, torch.Tensor]:
        return {}

    def after_stage(self, model: torch.nn.Module, ctx: StageContext) -> None:
        pass

    @contextmanager
    def eval_model(self, model: torch.nn.Module, task_index: int):
        yield model

    def probe_model_note(self) -> str:
        return "the model after the latest stage"

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, model: torch.nn.Module) -> None:
        pass


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}
