"""OSF: it trains what peft's OSF says it trains, re-projection keeps AdamW's update off the frozen directions, and
each stage's update is merged into the weights."""

import pytest
import torch

from continual.models import load_model
from strategies.osf import OSF, OSFOptions, osf_layers, reproject
from tests.conftest import StageRunner


def test_the_trained_parameters_are_peft_osfs_own():
    strategy = OSF(OSFOptions(effective_rank=0.5, target_modules="q_proj,gate_proj"))
    model = strategy.setup(load_model("tiny", seed=0).model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("osf_svd_params" in n for n in trainable)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == \
        strategy.wrapper.get_nb_trainable_parameters()[0]


def leakage(layer) -> float:
    """Share of the layer's update that lies in its frozen top singular directions (output side)."""
    high = layer._osf_U_high["default"]
    delta = layer.get_delta_weight("default")
    return float((high.T @ delta).norm() / delta.norm())


def test_reprojection_after_adamw_keeps_the_update_orthogonal():
    torch.manual_seed(0)
    strategy = OSF(OSFOptions(effective_rank=0.25, target_modules="gate_proj"))
    loaded = load_model("tiny", seed=0)
    model = strategy.setup(loaded.model)
    layer = next(m for m in osf_layers(model) if "default" in m._osf_U_high)
    ids = torch.tensor([loaded.tokenizer("Harry Potter is Lord Voldemort's enemy.")["input_ids"]])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert leakage(layer) > 1e-3  # AdamW moved the update into the frozen directions
    reproject(layer)
    assert leakage(layer) < 1e-4


def test_each_stage_is_merged_and_the_next_one_starts_a_fresh_decomposition():
    runner = StageRunner(OSF(), steps=2, lr=1e-2)
    original = {n: p.detach().clone() for n, p in load_model("tiny", seed=0).model.named_parameters()}
    runner.stage(0)
    assert not osf_layers(runner.model) and runner.strategy.wrapper is None  # merged: a plain model again
    after = dict(runner.model.named_parameters())
    assert any(not torch.equal(after[n], original[n]) for n in original if n in after)
    rows = runner.stage(1)
    assert len(rows) == 2 and runner.strategy.stages_done == 2
    assert runner.strategy.frozen_share(1) == 0.6


def first_step_size(strategy_name: str) -> float:
    """Frobenius norm, over every Linear layer but the head, of the weight change of one AdamW step at the
    strategy's default learning rate on the default model."""
    from strategies import make_strategy
    loaded = load_model("smollm2-135m")
    strategy = make_strategy(strategy_name)
    linear = {n: m.weight.detach().clone() for n, m in loaded.model.named_modules()
              if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")}
    model = strategy.setup(loaded.model)
    ids = torch.tensor([loaded.tokenizer("Text: The match ended in a draw after extra time.\nKind of text: sports")
                        ["input_ids"]])
    # the runs' optimizer: AdamW without weight decay (continual.training)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=strategy.default_lr,
                                  weight_decay=0.0)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    strategy.after_optimizer_step(model)
    if strategy_name == "osf":
        deltas = [m.get_delta_weight("default") for m in osf_layers(model)]
    else:
        deltas = [m.weight.detach() - linear[n] for n, m in model.named_modules() if n in linear]
    assert len(deltas) == len(linear)
    return float(torch.sqrt(sum((d.detach() ** 2).sum() for d in deltas)))


@pytest.mark.slow
def test_the_default_learning_rate_moves_the_weights_about_as_far_as_naives():
    # AdamW's steps are about lr per trained element: on OSF's U, S, V factors that moves W ~3.6x farther than a
    # step on W itself at the same lr (1e-4 blew general-text perplexity up 7-19x in one 10-step stage)
    ratio = first_step_size("osf") / first_step_size("naive")
    assert 0.7 < ratio < 1.3, ratio
