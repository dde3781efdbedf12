"""A-GEM: the projection's formula and its half-space, the untouched case, and the hook on real training."""

import pytest
import torch

from strategies.agem import AGEM, AGEMOptions, project
from tests.conftest import StageRunner


def test_a_conflicting_gradient_is_projected_by_the_formula():
    gen = torch.Generator().manual_seed(0)
    ref = [torch.randn(5, 3, generator=gen), torch.randn(4, generator=gen)]
    g = [-2 * r + 0.1 * torch.randn(r.shape, generator=gen) for r in ref]  # against the reference
    original = [x.clone() for x in g]
    dot, projected = project(g, ref)
    flat = lambda xs: torch.cat([x.reshape(-1) for x in xs]).double()  # noqa: E731
    assert projected and dot < 0
    expected = flat(original) - (flat(original) @ flat(ref)) / (flat(ref) @ flat(ref)) * flat(ref)
    torch.testing.assert_close(flat(g), expected, rtol=1e-6, atol=1e-6)
    assert float(flat(g) @ flat(ref)) >= -1e-5  # on the half-space boundary


def test_an_agreeing_gradient_is_left_as_it_is():
    ref = [torch.ones(3)]
    g = [torch.tensor([1.0, -0.5, 2.0])]
    dot, projected = project(g, ref)
    assert not projected and dot == pytest.approx(2.5) and torch.equal(g[0], torch.tensor([1.0, -0.5, 2.0]))


class FixedStep:
    """A stand-in for the trainer's step: its backward writes a fixed reference gradient."""

    def __init__(self, model, reference):
        self.model, self.reference, self.logged, self.batches = model, reference, {}, []

    def backward(self, batch):
        self.batches.append(batch)
        for p, r in zip(self.model.parameters(), self.reference):
            p.grad.add_(r)
        return 0.0

    def log(self, name, value):
        self.logged[name] = value


def test_the_hook_projects_the_models_gradient_against_the_memorys():
    runner = StageRunner(AGEM(AGEMOptions(memory_size=6, memory_batch=2)), steps=2, lr=1e-3)
    runner.stage(0)  # fills the memory
    strategy, model = runner.strategy, runner.model
    strategy.before_stage(model, runner.context(1))
    params = list(model.parameters())
    reference = [torch.randn_like(p) for p in params]
    for p, r in zip(params, reference):
        p.grad = -r.clone()  # exactly opposed: the projection removes it entirely
    step = FixedStep(model, reference)
    strategy.after_backward(model, {}, step)
    assert step.logged["agem_projected"] == 1.0 and step.logged["agem_dot"] < 0
    assert all(float(p.grad.abs().max()) < 1e-4 for p in params)
    assert step.batches[0]["input_ids"].shape[0] == 2  # a memory batch of memory_batch examples


def test_a_stage_after_the_first_projects_some_steps_and_logs_it():
    runner = StageRunner(AGEM(AGEMOptions(memory_size=8, memory_batch=4)), steps=3, lr=1e-2)
    first = runner.stage(0)
    assert "agem_projected" not in first[0]  # an empty memory: plain steps
    second = runner.stage(1)
    assert all(r["agem_projected"] in (0.0, 1.0) and "agem_dot" in r for r in second)
    assert {e["task"] for e in runner.strategy.memory.examples} == {"hogwarts", "middle-earth"}
