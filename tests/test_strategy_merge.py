"""Merging: the full-weight merge equals its formula (linear) and peft's merge_utils applied by hand (TIES, DARE);
lora-merge's merged adapter is peft's combination of the task adapters, and every task is scored with it."""

import pytest
import torch
from peft.utils import merge_utils

from continual.errors import ContinualError
from strategies import make_strategy
from strategies.lora_merge import LoraMerge, LoraMergeOptions
from strategies.merge import Merge, MergeOptions
from tests.conftest import StageRunner


def merged_run(options: MergeOptions):
    """Two stages; returns (theta_0, theta_prev before stage 1, the stage's unmerged result, the merged weights)."""
    runner = StageRunner(Merge(options), steps=2, lr=1e-2)
    theta0 = {n: p.clone() for n, p in runner.strategy.original.items()}
    runner.stage(0)
    previous = {n: p.detach().clone() for n, p in runner.model.named_parameters()}
    captured = {}
    real = Merge.after_stage

    def keep(self, model, ctx):  # the weights the stage trained, before the merge replaces them
        captured.update({n: p.detach().clone() for n, p in model.named_parameters()})
        real(self, model, ctx)
    Merge.after_stage = keep
    try:
        runner.stage(1)
    finally:
        Merge.after_stage = real
    return theta0, previous, captured, {n: p.detach() for n, p in runner.model.named_parameters()}


def test_the_first_stage_is_kept_and_the_linear_merge_interpolates():
    theta0, previous, new, merged = merged_run(MergeOptions(method="linear", alpha=0.3))
    assert any(not torch.equal(previous[n], theta0[n]) for n in theta0)  # stage 0 was kept as trained
    for n in theta0:
        expected = theta0[n] + 0.7 * (previous[n] - theta0[n]) + 0.3 * (new[n] - theta0[n])
        torch.testing.assert_close(merged[n], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["ties", "dare_linear", "dare_ties"])
def test_ties_and_dare_equal_peft_merge_utils_by_hand(method):
    options = MergeOptions(method=method, alpha=0.6, density=0.5)
    theta0, previous, new, merged = merged_run(options)
    weights = torch.tensor([0.4, 0.6])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 * 1000 + 1)  # the strategy's seed for stage 1 of seed 0
        for n in theta0:  # in the order the strategy merges: the model's trainable parameters
            tensors = [previous[n] - theta0[n], new[n] - theta0[n]]
            if method == "ties":
                tau = merge_utils.ties(tensors, weights, 0.5, "total")
            elif method == "dare_linear":
                tau = merge_utils.dare_linear(tensors, weights, 0.5)
            else:
                tau = merge_utils.dare_ties(tensors, weights, 0.5, "total")
            torch.testing.assert_close(merged[n], theta0[n] + tau, rtol=1e-5, atol=1e-7)


def test_merge_needs_the_models_own_weights():
    with pytest.raises(ContinualError, match="merge needs training that changes the model's own weights"):
        make_strategy("lora+merge")
    assert [p.name for p in make_strategy("merge+replay").parts] == ["merge", "replay"]


def test_lora_merge_scores_every_task_with_peft_combination_of_the_adapters():
    runner = StageRunner(LoraMerge(LoraMergeOptions(combination="ties", density=0.5)), steps=2, lr=5e-2)
    runner.stage(0)
    runner.stage(1)
    model, strategy = runner.model, runner.strategy
    assert "merged" in model.peft_config and strategy.trained == [0, 1]
    layers = [m for m in model.modules() if hasattr(m, "lora_A") and "merged" in m.lora_A]
    for layer in layers:  # peft's ties (no svd) merges A and B separately with weights sqrt(w * scaling)
        w = torch.tensor([(0.5 * layer.scaling[a]) ** 0.5 for a in ("task_0", "task_1")])
        for part in ("lora_A", "lora_B"):
            mats = [getattr(layer, part)[a].weight.data for a in ("task_0", "task_1")]
            torch.testing.assert_close(merge_utils.ties(mats, w, 0.5, "total"), getattr(layer, part)["merged"].weight)
    with strategy.eval_model(model, 0) as m:
        assert m.active_adapter == "merged"
        zero = runner.logits(m)
    with strategy.eval_model(model, 1) as m:
        torch.testing.assert_close(runner.logits(m), zero)  # no task id
    assert model.active_adapter == "task_1"  # training continues on the task's own adapter


def test_lora_merge_cat_is_the_mean_of_the_task_updates():
    runner = StageRunner(LoraMerge(LoraMergeOptions(combination="cat")), steps=2, lr=5e-2)
    runner.stage(0)
    runner.stage(1)
    for layer in [m for m in runner.model.modules() if hasattr(m, "lora_A") and "merged" in m.lora_A]:
        mean = (layer.get_delta_weight("task_0") + layer.get_delta_weight("task_1")) / 2
        torch.testing.assert_close(layer.get_delta_weight("merged"), mean, rtol=1e-5, atol=1e-7)
