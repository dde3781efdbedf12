"""LoRA isolation: a fresh adapter per task on a frozen base; task j is evaluated with adapter j (oracle task id).

Before adapter j has been trained (j later than the current stage) task j is scored on the base model with adapters
disabled. The retention probe measures the model as a user would deploy it after the latest stage: the base with
the latest task's adapter. No adapter is trained twice and the base never is, so task j's scoring model after
stage j never changes: BWT and forgetting are zero by construction where a task's candidates stay the same
(task- and domain-incremental streams). In a class-incremental stream they are not: R[j,j] is scored over the labels
of tasks 0..j and the final row over all labels, so the same adapter can lose accuracy to labels it never saw
(a negative BWT that measures the growing label space, not interference between tasks).
"""

from __future__ import annotations

from contextlib import contextmanager

from peft import get_peft_model

from strategies.base import BASE_WEIGHTS, MODEL_WRAPPER, ONE_ADAPTER, Strategy
from strategies.lora import LoraOptions


def adapter_name(index: int) -> str:
    return f"task_{index}"


class LoraIsolation(Strategy):
    name = "lora-isolation"
    Config = LoraOptions
    default_lr = 5e-4
    claims = frozenset({MODEL_WRAPPER})
    removes = frozenset({ONE_ADAPTER, BASE_WEIGHTS})
    packing_safe = True

    def __init__(self, config=None):
        super().__init__(config)
        self.trained: list[int] = []  # stages whose adapter is trained

    def setup(self, model):
        return get_peft_model(model, self.config.peft_config(), adapter_name=adapter_name(0))

    def _ensure_adapter(self, model, index: int) -> None:
        if adapter_name(index) not in model.peft_config:
            model.add_adapter(adapter_name(index), self.config.peft_config())

    def before_stage(self, model, ctx):
        self._ensure_adapter(model, ctx.index)
        model.set_adapter(adapter_name(ctx.index))  # peft: only the active adapter is trainable

    def after_stage(self, model, ctx):
        self.trained.append(ctx.index)

    @contextmanager
    def eval_model(self, model, task_index):
        active = model.active_adapter
        if task_index in self.trained:
            model.set_adapter(adapter_name(task_index))
            try:
                yield model
            finally:
                model.set_adapter(active)
        else:
            with model.disable_adapter():
                yield model

    def probe_model_note(self) -> str:
        return "the base with the latest task's adapter (as deployed after the latest stage)"

    def state_dict(self):
        return {"trained": list(self.trained)}

    def load_state_dict(self, state, model):
        self.trained = list(state["trained"])
        for index in self.trained:  # the checkpoint's weights include these adapters
            self._ensure_adapter(model, index)
