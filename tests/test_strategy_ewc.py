import pytest
import torch
from datasets import Dataset

from continual.scoring import split_continuation
from strategies.ewc import EWC, EWCOptions, diagonal_fisher, fisher_estimate, penalty_gradient_
from tests.conftest import StageRunner

DATA = Dataset.from_dict({"prompt": ["Harry Potter is Lord Voldemort's", "Yoda is Luke Skywalker's",
                                     "Gimli is Sauron's"], "completion": [" enemy.", " friend.", " enemy."]})


def test_fisher_equals_the_mean_squared_per_example_gradient(tiny):
    model, tok = tiny.model, tiny.tokenizer
    fisher = diagonal_fisher(model, DATA, tok, batch_size=1, max_length=64)
    params = dict(model.named_parameters())
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for prompt, completion in zip(DATA["prompt"], DATA["completion"]):
        ctx, cont = split_continuation(tok, prompt, completion)
        logp = model(torch.tensor([ctx + cont])).logits[0].log_softmax(-1)
        loss = -torch.stack([logp[len(ctx) + i - 1, t] for i, t in enumerate(cont)]).sum()  # the log-likelihood
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
    task1 = diagonal_fisher(runner.model, runner.stream.tasks[1].train, runner.tokenizer, samples=4,
                            max_length=runner.config.max_length)
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


# a 42-token prompt and two shorter ones, each with a 42-token answer (the tiny tokenizer), and a 2-token answer
LONG = Dataset.from_dict({
    "prompt": ["In the old tales told by the river, the wizard was known to all as",
               "Harry Potter is Lord Voldemort's", "Gimli is Sauron's"],
    "completion": [" the grey wanderer who never stayed long in any town of men or elves"] * 2 + [" enemy."]})


def _hand_fisher(model, tok, data, max_length):
    """Per parameter: mean over the examples that keep an answer token of (d/d theta sum_t log p(y_t | ...))^2,
    each example truncated to max_length tokens, computed directly with autograd."""
    params = dict(model.named_parameters())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    used = 0
    for prompt, completion in zip(data["prompt"], data["completion"]):
        ctx, cont = split_continuation(tok, prompt, completion)
        ids = (ctx + cont)[:max_length]
        answer = range(len(ctx), len(ids))  # positions of the answer tokens left after truncation
        if not answer:
            continue
        logp = model(torch.tensor([ids])).logits[0].log_softmax(-1)
        loglik = torch.stack([logp[i - 1, ids[i]] for i in answer]).sum()
        for (n, _), g in zip(params.items(), torch.autograd.grad(loglik, list(params.values()), allow_unused=True)):
            if g is not None:
                total[n] += g ** 2
        used += 1
    return {n: t / used for n, t in total.items()}, used


@pytest.mark.parametrize("max_length, used, answer_tokens", [(32, 2, [16, 2]), (64, 3, [22, 42, 2]),
                                                             (128, 3, [42, 42, 2])])
def test_fisher_at_the_runs_max_length_is_the_log_likelihoods(tiny, max_length, used, answer_tokens):
    """At 32 tokens the 42-token prompt keeps no answer token (skipped, counted); at 64 it keeps 22 of 42; at 128
    all. The Fisher equals the hand computation over exactly the examples and tokens that remain."""
    model, tok = tiny.model, tiny.tokenizer
    kept = [min(len(c), max(0, max_length - len(p))) for p, c in
            (split_continuation(tok, p, c) for p, c in zip(LONG["prompt"], LONG["completion"]))]
    assert [k for k in kept if k] == answer_tokens  # the premise: what truncation leaves of each answer
    fisher, counts = fisher_estimate(model, LONG, tok, max_length=max_length)
    assert counts == {"examples": 3, "skipped_no_answer_token": 3 - used, "used": used, "max_length": max_length}
    expected, n = _hand_fisher(model, tok, LONG, max_length)
    assert n == used
    for name in expected:
        torch.testing.assert_close(fisher[name], expected[name], rtol=1e-4, atol=1e-10)
        assert torch.isfinite(fisher[name]).all()
    assert sum(float(f.sum()) for f in fisher.values()) > 0


def test_fisher_of_the_sum_is_t_squared_times_that_of_the_mean_token_loss(tiny):
    """The convention, measured: for one example the squared gradient of the sum over its T answer tokens is T^2
    times that of their mean (here T = 42)."""
    model, tok = tiny.model, tiny.tokenizer
    one = LONG.select([1])
    fisher = diagonal_fisher(model, one, tok, max_length=128)
    ctx, cont = split_continuation(tok, one["prompt"][0], one["completion"][0])
    model.zero_grad(set_to_none=True)
    ids = torch.tensor([ctx + cont])
    labels = torch.tensor([[-100] * len(ctx) + cont])
    model(input_ids=ids, labels=labels).loss.backward()  # the mean answer-token loss
    name = "model.embed_tokens.weight"
    mean_sq = dict(model.named_parameters())[name].grad ** 2
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(fisher[name], len(cont) ** 2 * mean_sq, rtol=1e-3, atol=1e-9)


def test_ewc_records_skipped_examples_in_its_state_and_file(tiny):
    """An example with no answer token within the run's max_length is never in the Fisher's mean: the strategy
    logs how many were offered, skipped and used, in its state and in RUN/strategy/ewc_fisher.csv."""
    from types import SimpleNamespace

    from strategies.base import StageContext
    saved = {}
    task = SimpleNamespace(name="long", train=LONG)
    ctx = StageContext(index=0, task=task, stream=None, tokenizer=tiny.tokenizer, device="cpu", seed=0, batch_size=2,
                       general_source="offline", max_length=32, save=lambda name, frame: saved.update({name: frame}))
    ewc = EWC()
    ewc.after_stage(tiny.model, ctx)
    row = ewc.fisher_log[0]
    assert (row["stage"], row["data"], row["examples"], row["skipped_no_answer_token"], row["used"],
            row["max_length"]) == (0, "long", 3, 1, 2, 32)
    assert "log-likelihood" in row["convention"]
    frame = saved["ewc_fisher.csv"]
    assert frame.loc[0, "skipped_no_answer_token"] == 1 and frame.loc[0, "used"] == 2
    assert ewc.state_dict()["fisher_log"] == ewc.fisher_log
    expected, _ = _hand_fisher(tiny.model, tiny.tokenizer, LONG, 32)
    for name in expected:
        torch.testing.assert_close(ewc.fisher[name], expected[name], rtol=1e-4, atol=1e-10)


def test_a_fisher_with_no_answer_token_anywhere_refuses(tiny):
    from continual.errors import ContinualError
    with pytest.raises(ContinualError, match="keep no answer token within max_length 8"):
        fisher_estimate(tiny.model, LONG.select([0]), tiny.tokenizer, max_length=8)


def test_no_fisher_is_estimated_after_the_last_stage(tmp_path):
    """The runner marks the last stage; EWC estimates a Fisher after every stage but that one (nothing later is
    penalised with it), so RUN/strategy/ewc_fisher.csv has a row for each earlier stage only."""
    import pandas as pd

    import continual
    result = continual.run(stream="facts", strategy="ewc", model="tiny", steps=2, batch_size=4, seed=0, lr=1e-3,
                           progress=False, plots=False, probe="cloze", out=str(tmp_path / "ewc"),
                           stream_options={"facts.camp_size": 3}, strategy_options={"ewc.fisher_samples": 4})
    log = pd.read_csv(result.path / "strategy" / "ewc_fisher.csv")
    assert log["stage"].tolist() == [0, 1]
    assert log["data"].tolist() == ["hogwarts", "middle-earth"]
