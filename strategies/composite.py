"""Several strategies on one model (``lora+replay``): every hook runs for each part, in the order given.

setup and mix_batches chain; loss terms add up; after_backward runs for each part; eval_model contexts nest; the
stage plan is the first part's that changes it, and the trainer the part's that claims it (else the SFT trainer).
Whether parts combine follows from what they declare (strategies.base): ``combination_problem``.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

from strategies.base import RUN_CAPABILITIES, TRAINER, Strategy


def combination_problem(parts: list[Strategy]) -> str | None:
    """Why these parts cannot share a run, from their declarations; None when they can."""
    if len(parts) > 1:
        for p in parts:
            if p.alone:
                return f"{p.alone}, so it combines with nothing"
    for claim in {c for p in parts for c in p.claims}:
        holders = [p.name for p in parts if claim in p.claims]
        if len(holders) > 1:
            return f"{' and '.join(holders)} both need {claim}"
    for p in parts:
        for need in p.needs:
            takers = [q.name for q in parts if need in q.removes and q is not p]
            if takers or need not in RUN_CAPABILITIES:
                return f"{p.name} needs {need}, which {' and '.join(takers) or 'no run'} does not give"
    return None


class Composite(Strategy):
    def __init__(self, parts: list[Strategy]):
        super().__init__(config=None)
        self._parts = parts
        self.name = "+".join(p.name for p in parts)
        self.default_lr = next((p.default_lr for p in parts if p.default_lr != Strategy.default_lr),
                               Strategy.default_lr)
        self.claims = frozenset().union(*(p.claims for p in parts))
        self.needs = frozenset().union(*(p.needs for p in parts))
        self.removes = frozenset().union(*(p.removes for p in parts))
        self.packing_safe = all(p.packing_safe for p in parts)
        self.reference = any(p.reference for p in parts)

    @property
    def parts(self):
        return self._parts

    def describe(self):
        return {p.name: p.describe() for p in self.parts}

    def check_stream(self, stream):
        for p in self.parts:
            p.check_stream(stream)

    def check_model(self, model):
        for p in self.parts:
            p.check_model(model)

    def stage_plan(self, stream, steps):
        for p in self.parts:
            if type(p).stage_plan is not Strategy.stage_plan:
                return p.stage_plan(stream, steps)
        return super().stage_plan(stream, steps)

    def build_trainer(self, model, batches, ctx, settings, callbacks, hooks):
        owner = next((p for p in self.parts if TRAINER in p.claims), None)
        if owner is None:
            return super().build_trainer(model, batches, ctx, settings, callbacks, hooks)
        return owner.build_trainer(model, batches, ctx, settings, callbacks, hooks)

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

    def after_backward(self, model, inputs, step):
        applied = {}
        for p in self.parts:
            applied.update(p.after_backward(model, inputs, step) or {})
        return applied

    def after_optimizer_step(self, model):
        for p in self.parts:
            p.after_optimizer_step(model)

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
