"""O-LoRA: the orthogonality term against hand computations, frozen earlier adapters, and scoring with every
adapter active (no task id)."""

import pytest
import torch

from continual.errors import ContinualError
from continual.models import load_model
from strategies import make_strategy
from strategies.o_lora import OLora, OLoraOptions, lora_layers, orthogonality
from tests.conftest import StageRunner


def two_adapters():
    strategy = OLora(OLoraOptions(r=2, target_modules="q_proj"))
    model = strategy.setup(load_model("tiny", seed=0).model)
    strategy.before_stage(model, type("Ctx", (), {"index": 1})())
    return strategy, model


def test_the_penalty_is_zero_for_orthogonal_rows_and_a_hand_sum_otherwise():
    strategy, model = two_adapters()
    layers = lora_layers(model)
    width = layers[0].lora_A["task_0"].weight.shape[1]
    eye = torch.eye(width)
    with torch.no_grad():
        for layer in layers:
            layer.lora_A["task_0"].weight.copy_(eye[:2])  # rows 0-1
            layer.lora_A["task_1"].weight.copy_(eye[2:4] * 3.0)  # rows 2-3: orthogonal
    assert float(orthogonality(model, "task_1", ["task_0"])) == 0.0
    gen = torch.Generator().manual_seed(0)
    expected = 0.0
    with torch.no_grad():
        for layer in layers:
            a_new, a_old = torch.randn(2, width, generator=gen), torch.randn(2, width, generator=gen)
            layer.lora_A["task_1"].weight.copy_(a_new)
            layer.lora_A["task_0"].weight.copy_(a_old)
            expected += sum(abs(float(a_new[i] @ a_old[j])) for i in range(2) for j in range(2))
    assert float(orthogonality(model, "task_1", ["task_0"])) == pytest.approx(expected, rel=1e-5)
    terms = strategy.loss_terms(model, {}, None)
    assert float(terms["olora_orth"]) == pytest.approx(0.5 * expected, rel=1e-5)  # lambda_orth 0.5
    trainable = {n.split(".")[-2] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"task_1"}  # the earlier adapter is frozen


def test_earlier_adapters_stay_bit_identical_and_every_task_is_scored_with_all_of_them():
    runner = StageRunner(OLora(), steps=3, lr=5e-2)
    runner.stage(0)
    first = {n: p.detach().clone() for n, p in runner.model.named_parameters() if ".task_0." in n}
    rows = runner.stage(1)
    after = dict(runner.model.named_parameters())
    assert first and all(torch.equal(first[n], after[n]) for n in first)
    assert all(r["olora_orth"] > 0 for r in rows)
    model, strategy = runner.model, runner.strategy
    assert model.active_adapters == ["task_0", "task_1"]
    with strategy.eval_model(model, 0) as m:
        zero = runner.logits(m)
    with strategy.eval_model(model, 2) as m:
        two = runner.logits(m)
    torch.testing.assert_close(zero, two)  # no task id: one model for every task
    model.base_model.set_adapter(["task_1"])
    assert not torch.allclose(runner.logits(model), zero)  # both adapters contribute


def test_a_resumed_run_recreates_the_adapters_its_weights_need():
    runner = StageRunner(OLora(), steps=2, lr=5e-2)
    runner.stage(0)
    runner.stage(1)
    state, weights = runner.strategy.state_dict(), {k: v.clone() for k, v in runner.model.state_dict().items()}
    fresh = OLora()
    model = fresh.setup(load_model("tiny", seed=0).model)
    fresh.load_state_dict(state, model)
    model.load_state_dict(weights)
    torch.testing.assert_close(runner.logits(model), runner.logits())


def test_it_refuses_a_second_adapter_scheme():
    with pytest.raises(ContinualError, match="o-lora and lora both need the model's wrapping"):
        make_strategy("o-lora+lora")
    with pytest.raises(ContinualError, match="dpo needs at most one LoRA adapter"):
        make_strategy("o-lora+dpo")
    assert [p.name for p in make_strategy("o-lora+replay").parts] == ["o-lora", "replay"]
