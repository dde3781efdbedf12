"""The hook interface every strategy implements (after Avalanche's plugins), and the stage context it sees.

The runner calls, for each stage: ``before_stage`` -> ``train_dataset`` (batch mixing) -> training, where the
trainer adds ``loss_terms`` to the LM loss at every step -> ``after_stage``. Evaluation of task j runs inside
``eval_model(model, j)`` (per-task adapters swap there). ``setup`` runs once before the first stage and may wrap
the model (LoRA). ``state_dict``/``load_state_dict`` carry what a resumed run needs (Fisher, buffers, ...).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset


@dataclass
class StageContext:
    index: int  # 0-based stage number
    task: Any  # continual.streams.Task being trained
    stream: Any  # the whole continual.streams.Stream
    tokenizer: Any
    device: str


class Strategy:
    name = "base"

    def setup(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def before_stage(self, model: torch.nn.Module, ctx: StageContext) -> None:
        pass

    def train_dataset(self, dataset: Dataset, ctx: StageContext) -> Dataset:
        return dataset

    def loss_terms(self, model, inputs: dict, outputs) -> dict[str, torch.Tensor]:
        return {}

    def after_stage(self, model: torch.nn.Module, ctx: StageContext) -> None:
        pass

    @contextmanager
    def eval_model(self, model: torch.nn.Module, task_index: int):
        yield model

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
