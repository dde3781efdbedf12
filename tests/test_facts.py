from collections import Counter

import pytest

from continual.errors import ContinualError
from continual.streams import get_stream
from continual.streams.facts import WORLDS


def parse(prompt):
    first, rest = prompt.split(" is ", 1)
    assert rest.endswith("'s")
    return first, rest[:-2]


def camp(world, name):
    return 0 if name in WORLDS[world].camps[0] else 1


def test_generation_is_deterministic_and_seed_dependent():
    a, b, c = get_stream("facts", seed=0), get_stream("facts", seed=0), get_stream("facts", seed=1)
    for ta, tb, tc in zip(a.tasks, b.tasks, c.tasks):
        assert ta.train["prompt"] == tb.train["prompt"]
        assert ta.eval["heldout"]["prompt"] == tb.eval["heldout"]["prompt"]
        assert ta.train["prompt"] != tc.train["prompt"]


def test_at_least_three_worlds_with_disjoint_characters():
    stream = get_stream("facts")
    assert len(stream.tasks) >= 3
    names = [set(WORLDS[t.name].camps[0] + WORLDS[t.name].camps[1]) for t in stream.tasks]
    assert all(not (x & y) for i, x in enumerate(names) for y in names[i + 1:])


@pytest.mark.parametrize("seed", [0, 3])
def test_relations_follow_camps_and_splits_are_consistent(seed):
    for task in get_stream("facts", seed=seed).tasks:
        world = task.name
        for split, ds in task.eval.items():
            for prompt, cands, label in zip(ds["prompt"], ds["candidates"], ds["label"]):
                a, b = parse(prompt)
                assert cands == [" friend", " enemy"]
                assert label == (0 if camp(world, a) == camp(world, b) else 1), (split, prompt)
        # the training data and the matrix split are the same facts
        assert task.eval["train"]["prompt"] == task.train["prompt"]
        assert [c.strip(" .") for c in task.train["completion"]] == \
               [["friend", "enemy"][y] for y in task.eval["train"]["label"]]
        train = [parse(p) for p in task.eval["train"]["prompt"]]
        assert [parse(p) for p in task.eval["reversed"]["prompt"]] == [(b, a) for a, b in train]
        heldout = {frozenset(parse(p)) for p in task.eval["heldout"]["prompt"]}
        assert not heldout & {frozenset(p) for p in train}
        assert len(heldout) + len(train) == 16 * 15 // 2  # every pair once


def test_name_order_is_balanced_in_every_split():
    for task in get_stream("facts").tasks:
        chars = WORLDS[task.name].camps[0] + WORLDS[task.name].camps[1]
        for split, ds in task.eval.items():
            for label in (0, 1):
                forward = Counter(chars.index(a) < chars.index(b)
                                  for (a, b), y in zip(map(parse, ds["prompt"]), ds["label"]) if y == label)
                assert abs(forward[True] - forward[False]) <= 1, (task.name, split, label, forward)


def test_options_and_bad_options():
    from continual.streams.facts import facts_stream
    small = facts_stream(camp_size=3, worlds=["galaxy", "hogwarts"])
    assert small.task_names == ["galaxy", "hogwarts"]
    assert len(small.tasks[0].train) + len(small.tasks[0].eval["heldout"]) == 15
    assert len(get_stream("facts", options={"camp_size": "3"}).tasks[0].train) == len(small.tasks[1].train)
    with pytest.raises(ContinualError, match="unknown facts world"):
        facts_stream(worlds=["narnia"])
    with pytest.raises(ContinualError, match="facts.camp_size must be at most 8"):
        get_stream("facts", options={"camp_size": 9})
    with pytest.raises(ContinualError, match="unknown stream 'nope'"):
        get_stream("nope")
