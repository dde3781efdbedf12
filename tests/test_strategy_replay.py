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
