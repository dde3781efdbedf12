from collections import Counter

import pytest

from continual.errors import ContinualError
from continual.training import plan_batches
from strategies.replay import Replay, ReplayOptions
from tests.conftest import StageRunner


def planned(runner, index, steps=10):
    examples = runner.stream.tasks[index].train.to_list()
    return [[examples[i] for i in b] for b in plan_batches(len(examples), steps, runner.config.batch_size, 0)]


def test_batches_carry_earlier_tasks_at_exactly_the_ratio():
    runner = StageRunner(Replay(ReplayOptions(ratio=0.25, buffer_size=6)), batch_size=8)
    replay, ctx0, ctx1 = runner.strategy, runner.context(0), runner.context(1)
    first = planned(runner, 0)
    assert replay.mix_batches(first, ctx0) == first  # nothing to replay yet
    replay.after_stage(runner.model, ctx0)
    assert len(replay.buffer) == 6 and {e["task"] for e in replay.buffer} == {"hogwarts"}
    current = {e["prompt"] for e in runner.stream.tasks[1].train.to_list()}
    past = {e["prompt"] for e in runner.stream.tasks[0].train.to_list()}
    mixed = replay.mix_batches(planned(runner, 1), ctx1)
    assert len(mixed) == 10
    for batch in mixed:
        assert len(batch) == 8
        origin = Counter("past" if e["prompt"] in past else "current" if e["prompt"] in current else "?"
                         for e in batch)
        assert origin == {"current": 6, "past": 2}


def test_reservoir_and_quota_buffers():
    runner = StageRunner(Replay(ReplayOptions(buffer_size=8, policy="quota")))
    for i in range(3):
        runner.strategy.after_stage(runner.model, runner.context(i))
    assert Counter(e["task"] for e in runner.strategy.buffer) == {"hogwarts": 2, "middle-earth": 2, "galaxy": 2}
    reservoir = StageRunner(Replay(ReplayOptions(buffer_size=8)))
    for i in range(3):
        reservoir.strategy.after_stage(reservoir.model, reservoir.context(i))
    assert len(reservoir.strategy.buffer) == 8
    assert reservoir.strategy.memory.seen == sum(len(t.train) for t in reservoir.stream.tasks)


def test_the_trainer_reads_the_mixed_batches_in_order(monkeypatch):
    import continual.training
    runner = StageRunner(Replay(ReplayOptions(ratio=0.5, buffer_size=4)), steps=3, batch_size=4)
    runner.stage(0)
    seen = {}
    real = continual.training.StageTrainer.train

    def capture(self, *a, **k):
        seen["batches"] = [b["input_ids"].tolist() for b in self.get_train_dataloader()]
        return real(self, *a, **k)
    monkeypatch.setattr(continual.training.StageTrainer, "train", capture)
    runner.stage(1)
    past_ids = {tuple(runner.tokenizer(e["prompt"] + e["completion"])["input_ids"]) for e in
                runner.stream.tasks[0].train.to_list()}  # (after stage 1 the buffer itself holds task 1 too)
    assert len(seen["batches"]) == 3
    for batch in seen["batches"]:
        rows = [tuple(t for t in row if t != runner.tokenizer.pad_token_id) for row in batch]
        assert sum(r in past_ids for r in rows) == 2


def test_general_text_replay_and_bad_options():
    runner = StageRunner(Replay(ReplayOptions(ratio=0.0, general_ratio=0.25)), batch_size=8)
    mixed = runner.strategy.mix_batches(planned(runner, 0, steps=2), runner.context(0))
    current = {e["prompt"] for e in runner.stream.tasks[0].train.to_list()}
    assert all(sum(e["prompt"] not in current for e in b) == 2 for b in mixed)
    with pytest.raises(ContinualError, match="sum to at most 1"):
        ReplayOptions(ratio=0.8, general_ratio=0.5)
    with pytest.raises(ContinualError, match="policy must be one of reservoir, quota"):
        ReplayOptions(policy="fifo")


@pytest.mark.parametrize("ratio, batch_size, steps", [(0.1, 4, 10), (0.1, 4, 7), (0.3, 4, 9), (0.25, 8, 10)])
def test_the_replayed_share_carries_its_remainder_across_steps(ratio, batch_size, steps):
    """round(0.1 * 4) = 0 would replay nothing; carried, after every step s the replayed count is within half an
    example of ratio * (examples planned so far), and over the stage floor(ratio * N + 0.5)."""
    runner = StageRunner(Replay(ReplayOptions(ratio=ratio, buffer_size=6)), batch_size=batch_size)
    replay = runner.strategy
    replay.after_stage(runner.model, runner.context(0))  # a buffer of task 0
    past = {e["prompt"] for e in runner.stream.tasks[0].train.to_list()}
    mixed = replay.mix_batches(planned(runner, 1, steps=steps), runner.context(1))
    assert [len(b) for b in mixed] == [batch_size] * steps
    replayed = 0
    for s, batch in enumerate(mixed, start=1):
        replayed += sum(e["prompt"] in past for e in batch)
        assert abs(replayed - ratio * s * batch_size) <= 0.5 + 1e-9
    assert replayed == int(ratio * steps * batch_size + 0.5)
    assert replayed >= 1  # 0.1 of 4 x 7 = 2.8 examples: 3, not 0


def test_the_buffer_holds_only_examples_the_stage_trained_on():
    """2 steps x batch 4 = 8 of the 11 training examples: the other 3 were never trained and never enter the
    buffer (through a real stage and the runner's own batch plan)."""
    runner = StageRunner(Replay(ReplayOptions(ratio=0.5, buffer_size=200)), steps=2, batch_size=4)
    train = runner.stream.tasks[0].train.to_list()
    assert len(train) > 8
    trained = {train[i]["prompt"] for b in plan_batches(len(train), 2, 4, 0 * 1000 + 0) for i in b}
    runner.stage(0)
    assert {e["prompt"] for e in runner.strategy.buffer} == trained and len(runner.strategy.buffer) == 8
    assert runner.strategy.memory.seen == 8
    # stage 1: half of each batch is replayed, so only 2 of each batch of task 1 are trained: 4 examples
    plan = plan_batches(len(runner.stream.tasks[1].train), 2, 4, 0 * 1000 + 1)
    train1 = runner.stream.tasks[1].train.to_list()
    kept1 = {train1[i]["prompt"] for b in plan for i in b[:2]}
    runner.stage(1)
    assert {e["prompt"] for e in runner.strategy.buffer if e["task"] == runner.stream.tasks[1].name} == kept1
    assert runner.strategy.memory.seen == 8 + len(kept1)
