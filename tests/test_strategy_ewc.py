import pytest
import torch
from datasets import Dataset

from continual.scoring import split_continuation
from strategies.ewc import EWC, EWCOptions, diagonal_fisher, penalty_gradient_
from tests.conftest import StageRunner

DATA = Dataset.from_dict({"prompt": ["Harry Potter is Lord Voldemort's", "Yoda is Luke Skywalker's",
                                     "Gimli is Sauron's"], "completion": [" enemy.", " friend.", " enemy."]})


def test_fisher_equals_the_mean_squared_per_example_gradient(tiny):
    model, tok = tiny.model, tiny.tokenizer
    fisher = diagonal_fisher(model, DATA, tok, batch_size=1)
    params = dict(model.named_parameters())
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for prompt, completion in zip(DATA["prompt"], DATA["completion"]):
        ctx, cont = split_continuation(tok, prompt, completion)
        logp = model(torch.tensor([ctx + cont])).logits[0].log_softmax(-1)
        loss = -torch.stack([logp[len(ctx) + i - 1, t] for i, t in enumerate(cont)]).mean()
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (n, _), g in zip(params.items(), grads):
            if g is not None:
                expected[n] += g ** 2 / len(DATA)
    assert set(fisher) == set(params)
    for n in params:
        torch.testing.assert_close(fisher[n], expected[n], rtol=1e-4, atol=1e-10)
    assert sum(float(f.sum()) for f in fisher.values()) > 0


def _penalised(lam=2.0, scale=1e-2):
    """The tiny model moved off its anchor, with a random Fisher, and an LM loss's gradients in .grad."""
    from continual.models import load_model
    loaded = load_model("tiny", seed=0)
    model = loaded.model
    gen = torch.Generator().manual_seed(0)
    ewc = EWC(EWCOptions(lam=lam))
    ewc.fisher = {n: torch.rand(p.shape, generator=gen) for n, p in model.named_parameters()}
    ewc.anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    ids = torch.tensor([loaded.tokenizer("Harry Potter is Lord Voldemort's enemy.")["input_ids"]])
    return ewc, model, ids


def test_closed_form_penalty_gradient_equals_autograds(tiny):
    """The strategy adds lambda * F * (theta - anchor) after backward; autograd of (lambda / 2) * sum F (theta -
    anchor)^2 added to the loss gives the same gradients and value."""
    ewc, model, ids = _penalised()
    loss = model(input_ids=ids, labels=ids).loss + ewc.config.lam / 2 * ewc.penalty(model, ewc.fisher, ewc.anchor)
    loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    reference_value = float(ewc.config.lam / 2 * ewc.penalty(model, ewc.fisher, ewc.anchor))
    model.zero_grad(set_to_none=True)
    model(input_ids=ids, labels=ids).loss.backward()
    terms = ewc.after_backward(model, {}, None)
    assert terms["ewc_penalty"] == pytest.approx(reference_value, rel=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, reference[n], rtol=1e-6, atol=1e-9)


def test_penalty_is_zero_at_the_anchor_and_grows_with_distance(tiny):
    from continual.models import load_model
    model = load_model("tiny", seed=0).model
    fisher = {n: torch.rand_like(p) for n, p in model.named_parameters()}
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert penalty_gradient_(model, fisher, anchor, 2.0) == 0.0
    assert all(float(p.grad.abs().sum()) == 0 for p in model.parameters())  # at the anchor: no pull
    values = []
    name, param = next(iter(model.named_parameters()))
    for delta in (1e-3, 1e-2, 1e-1):
        with torch.no_grad():
            param.copy_(anchor[name] + delta)
        model.zero_grad(set_to_none=True)
        values.append(penalty_gradient_(model, fisher, anchor, 2.0))
        expected = 2.0 / 2 * float((fisher[name] * delta ** 2).sum())
        assert values[-1] == pytest.approx(expected, rel=1e-4)
        torch.testing.assert_close(param.grad, 2.0 * fisher[name] * delta, rtol=1e-5, atol=1e-9)
    assert values[0] < values[1] < values[2]


def test_online_fisher_decays_and_the_penalty_pulls_training_towards_the_anchor():
    runner = StageRunner(EWC(EWCOptions(lam=1.0, gamma=0.5, fisher_samples=4)), steps=3)
    runner.stage(0)
    first = {n: f.clone() for n, f in runner.strategy.fisher.items()}
    anchor0 = {n: a.clone() for n, a in runner.strategy.anchor.items()}
    runner.stage(1)
    task1 = diagonal_fisher(runner.model, runner.stream.tasks[1].train, runner.tokenizer, samples=4)
    for n in first:
        torch.testing.assert_close(runner.strategy.fisher[n], 0.5 * first[n] + task1[n], rtol=1e-4, atol=1e-12)
    assert any(not torch.equal(anchor0[n], a) for n, a in runner.strategy.anchor.items())  # re-anchored

    def drift(lam):
        r = StageRunner(EWC(EWCOptions(lam=lam, fisher_samples=4)), steps=3)
        r.stage(0)
        start = {n: a.clone() for n, a in r.strategy.anchor.items()}
        r.stage(1)
        return sum(float((r.strategy.fisher[n] * (dict(r.model.named_parameters())[n].detach() - start[n]) ** 2).sum())
                   for n in start)
    assert drift(1e6) < drift(0.0)


def test_general_anchor_protects_the_original_weights_from_the_first_stage():
    from continual.models import load_model
    runner = StageRunner(EWC(EWCOptions(general=True, general_samples=8, fisher_samples=4)), steps=2)
    rows = runner.stage(0)
    ewc = runner.strategy
    original = dict(load_model("tiny", seed=0).model.named_parameters())
    assert ewc.general_fisher and set(ewc.general_fisher) == set(original)
    assert all(torch.equal(ewc.general_anchor[n], original[n]) for n in original)  # anchored before any training
    assert sum(float(f.sum()) for f in ewc.general_fisher.values()) > 0
    assert "ewc_general_penalty" in rows[-1] and rows[-1]["ewc_general_penalty"] > 0
    assert "ewc_penalty" not in rows[0]  # no task Fisher exists during the first stage
