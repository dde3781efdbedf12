import torch

from continual.models import load_model
from strategies.lora_isolation import LoraIsolation
from tests.conftest import StageRunner


def test_base_weights_stay_bit_identical_and_task_j_uses_adapter_j():
    runner = StageRunner(LoraIsolation(), steps=4, lr=5e-2)
    original = load_model("tiny", seed=0).model
    base_logits = runner.logits(original)
    runner.stage(0)
    runner.stage(1)
    model = runner.model
    # base weights untouched
    base_state = original.state_dict()
    for name, tensor in model.get_base_model().state_dict().items():
        if "lora_" not in name:
            key = name.replace(".base_layer", "")
            assert torch.equal(tensor, base_state[key]), name
    # each trained task is scored with its own adapter; an untrained one on the bare base
    strategy = runner.strategy
    with strategy.eval_model(model, 0) as m:
        assert m.active_adapter == "task_0"
        task0 = runner.logits(m)
    with strategy.eval_model(model, 1) as m:
        assert m.active_adapter == "task_1"
        task1 = runner.logits(m)
    with strategy.eval_model(model, 2) as m:
        untrained = runner.logits(m)
    assert not torch.allclose(task0, task1)
    assert not torch.allclose(task0, base_logits)
    torch.testing.assert_close(untrained, base_logits)
    model.set_adapter("task_0")
    torch.testing.assert_close(runner.logits(model), task0)
    # training stage 1 did not change adapter 0
    assert model.active_adapter == "task_0"


def test_only_the_current_adapter_trains():
    runner = StageRunner(LoraIsolation(), steps=2, lr=5e-2)
    runner.stage(0)
    before = {n: p.detach().clone() for n, p in runner.model.named_parameters() if "task_0" in n}
    runner.stage(1)
    after = dict(runner.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert runner.strategy.trained == [0, 1]
