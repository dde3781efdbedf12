"""Several strategies on one model (``lora+replay``): every hook runs for each part, in the order given.

setup and mix_batches chain; loss terms add up; eval_model contexts nest; the trainer is DPO's if any part is DPO.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

from strategies.base import Strategy


class Composite(Strategy):
    def __init__(self, parts: list[Strategy]):
        super().__init__(config=None)
        self._parts = parts
        self.name = "+".join(p.name for p in parts)
        self.trainer = "dpo" if any(p.trainer == "dpo" for p in parts) else "sft"
        self.default_lr = next((p.default_lr for p in parts if p.default_lr != Strategy.default_lr),
                               Strategy.default_lr)

    @property
    def parts(self):
        return self._parts

    def describe(self):
        return {p.name: p.describe() for p in self.parts}

    def setup(self, model):
        for p in self.parts:
            model = p.setup(model)
        return model

    def before_stage(self, model, ctx):
        for p in self.parts:
            p.before_stage(model, ctx)

    def mix_batches(self, batches, ctx):
        for p in self.parts:
            batches = p.mix_batches(batches, ctx)
        return batches

    def loss_terms(self, model, inputs, outputs):
        terms = {}
        for p in self.parts:
            terms.update(p.loss_terms(model, inputs, outputs))
        return terms

    def after_stage(self, model, ctx):
        for p in self.parts:
            p.after_stage(model, ctx)

    @contextmanager
    def eval_model(self, model, task_index):
        with ExitStack() as stack:
            for p in self.parts:
                model = stack.enter_context(p.eval_model(model, task_index))
            yield model

    def probe_model_note(self):
        notes = {p.probe_model_note() for p in self.parts} - {Strategy.probe_model_note(self)}
        return notes.pop() if notes else Strategy.probe_model_note(self)

    def state_dict(self):
        return {p.name: p.state_dict() for p in self.parts}

    def load_state_dict(self, state, model):
        for p in self.parts:
            p.load_state_dict(state[p.name], model)
