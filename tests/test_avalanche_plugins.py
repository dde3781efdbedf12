import io

import pandas as pd
import pytest
import torch
import yaml
from avalanche.training.plugins import EWCPlugin, GEMPlugin, LwFPlugin, SupervisedPlugin

import continual
from continual.errors import ContinualError
from continual.interop.avalanche_plugins import AvalancheReplay, plugin_strategy
from continual.training import plan_batches
from tests.conftest import StageRunner


def planned(ctx, steps, batch_size):
    examples = ctx.task.train.to_list()
    return [[examples[i] for i in b] for b in plan_batches(len(examples), steps, batch_size, ctx.index)]


def replay_batches(mem_size=6, ratio=0.25, steps=5, batch_size=4):
    """Drive AvalancheReplay's hooks over three stages (no training: replay only moves examples)."""
    strategy = AvalancheReplay(AvalancheReplay.Config(mem_size=mem_size, ratio=ratio))
    runner = StageRunner(strategy, batch_size=batch_size)
    stages = []
    for i in range(3):
        ctx = runner.context(i)
        strategy.before_stage(runner.model, ctx)
        batches = planned(ctx, steps, batch_size)
        stages.append((batches, strategy.mix_batches(batches, ctx), runner.stream))
        strategy.after_stage(runner.model, ctx)
    return strategy, stages


def test_replay_plugin_mixes_its_buffer_into_every_batch():
    strategy, stages = replay_batches()
    (first_planned, first, stream), (_, second, _), (_, third, _) = stages
    assert first is first_planned  # empty buffer: the planned batches stay
    train_prompts = [set(t.train["prompt"]) for t in stream.tasks]
    for batch in second:  # ratio 0.25 of 4: one replayed example of task 0, three of task 1
        assert len(batch) == 4
        assert [x["targets_task_labels"] for x in batch] == [1, 1, 1, 0]
        assert batch[3]["prompt"] in train_prompts[0] and all(x["prompt"] in train_prompts[1] for x in batch[:3])
    replayed = {x["targets_task_labels"] for batch in third for x in batch[3:]}
    assert replayed == {0, 1} and all(len(b) == 4 for b in third)
    # the experience-balanced buffer splits mem_size evenly between the tasks seen
    groups = strategy.plugins[0].storage_policy.buffer_groups
    assert {k: len(g.buffer) for k, g in groups.items()} == {0: 2, 1: 2, 2: 2}


def test_replay_plugin_batches_repeat_with_the_seed():
    _, a = replay_batches()
    _, b = replay_batches()
    assert [[x["prompt"] for x in batch] for _, mixed, _ in a for batch in mixed] == \
        [[x["prompt"] for x in batch] for _, mixed, _ in b for batch in mixed]


def test_a_resumed_run_replays_the_same_buffer():
    """The plugins (buffer included) go into the stage checkpoint; a resumed stage draws the same batches."""
    def second_stage(resume):
        strategy = AvalancheReplay(AvalancheReplay.Config(mem_size=6))
        runner = StageRunner(strategy, batch_size=4)
        ctx = runner.context(0)
        strategy.before_stage(runner.model, ctx)
        strategy.mix_batches(planned(ctx, 3, 4), ctx)
        strategy.after_stage(runner.model, ctx)
        if resume:
            saved = io.BytesIO()
            torch.save(strategy.state_dict(), saved)
            saved.seek(0)
            strategy = AvalancheReplay(AvalancheReplay.Config(mem_size=6))
            strategy.setup(runner.model)
            strategy.load_state_dict(torch.load(saved, weights_only=False), runner.model)
        ctx = runner.context(1)
        strategy.before_stage(runner.model, ctx)
        return [[x["prompt"] for x in b] for b in strategy.mix_batches(planned(ctx, 3, 4), ctx)]
    assert second_stage(resume=True) == second_stage(resume=False)


def test_avalanche_replay_runs_in_the_runner(tmp_path):
    result = continual.run(stream="facts", tasks="hogwarts,galaxy", model="tiny", steps=3, batch_size=4,
                           stream_options={"facts.camp_size": 3}, probe_options={"perplexity.tokens": 200,
                                                                                 "kl.tokens": 50},
                           progress=False, lr=1e-3, out=str(tmp_path / "run"),
                           strategy="continual.interop.avalanche_plugins:AvalancheReplay",
                           strategy_options={"avalanche-replay.mem_size": 6})
    assert result.summary["status"] == "completed"
    assert list(result.matrix.index) == ["base", "hogwarts", "galaxy"]
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    described = config["resolved"]["strategy"]
    assert (described["mem_size"], described["ratio"]) == (6, 0.25)
    assert [(p["class"], p["mem_size"]) for p in described["plugins"]] == [("ReplayPlugin", 6)]
    assert (result.losses.groupby("stage").size() == 3).all()


class L2Penalty(SupervisedPlugin):
    """A plugin that only adds to the loss (as regularisation plugins do) and checks what it is given."""
    def __init__(self):
        super().__init__()
        self.seen = []

    def before_backward(self, strategy, **kwargs):
        self.seen.append((tuple(strategy.mbatch["input_ids"].shape), tuple(strategy.mb_output.shape[:2])))
        strategy.loss += 1e-3 * sum((p ** 2).sum() for p in strategy.model.parameters() if p.requires_grad)


def test_a_plugins_loss_term_reaches_training():
    strategy = plugin_strategy("l2", lambda: [L2Penalty()])()
    rows = StageRunner(strategy, steps=3).stage(0)
    assert len(rows) == 3 and all(r["avalanche"] > 0 for r in rows)
    assert all(ids == logits for ids, logits in strategy.plugins[0].seen)  # logits line up with the batch


# EWCPlugin computes its importances on batch[0], batch[1] (a classifier's x, y); LwFPlugin distils the outputs
# of a classifier on strategy.mb_x (= batch[0]) over the classes (dataset.targets) of each experience
@pytest.mark.parametrize("make, callback", [(lambda: EWCPlugin(ewc_lambda=1.0), "after_training_exp"),
                                            (lambda: LwFPlugin(), "before_backward")])
def test_classifier_plugins_stop_with_the_documented_reason(make, callback):
    strategy = plugin_strategy("classifier", lambda: [make()])()
    with pytest.raises(ContinualError, match=rf"failed in {callback} .*not \(x, y, task\) tensors"):
        StageRunner(strategy, steps=1).stage(0)


def test_plugins_needing_trainer_internal_callbacks_are_refused():
    with pytest.raises(ContinualError, match="GEMPlugin uses callback.*before_training_iteration.*after_backward.*"
                                             "supported: before_training"):
        plugin_strategy("gem", lambda: [GEMPlugin(patterns_per_experience=4, memory_strength=0.5)])()


def test_avalanche_replay_options_are_checked():
    with pytest.raises(ContinualError, match="ratio"):
        AvalancheReplay(AvalancheReplay.Config(ratio=1.0))
    strategy = AvalancheReplay(AvalancheReplay.Config(ratio=0.1))
    runner = StageRunner(strategy, batch_size=4)
    with pytest.raises(ContinualError, match="batch of 4"):
        strategy.before_stage(runner.model, runner.context(0))


def test_losses_frame_has_no_plugin_column_for_replay():
    strategy = AvalancheReplay(AvalancheReplay.Config(mem_size=6))
    rows = StageRunner(strategy, steps=2).stage(0)
    assert "avalanche" not in pd.DataFrame(rows).columns  # replay adds no loss term
