"""Every built-in stream from its offline source: sizes, label balance, disjoint splits, determinism, scenario."""

from collections import Counter

import pytest

from continual.streams.sentiment import sentiment_stream

from continual.errors import ContinualError
from continual.streams import STREAMS, get_stream
from continual.streams.build import choice_task, generation_task

EXPECTED = {  # stream -> (task names, scenario prefix)
    "sentiment": (["movies", "products", "editorials", "tweets"], "domain-incremental"),
    "topics": (["reviews", "commentary", "stories"], "class-incremental"),
    "instructions": (["trivia", "emotion", "conversations", "ai"], "task-incremental"),
    "mixed": (["facts:hogwarts", "sentiment:movies", "topics:stories", "instructions:trivia"], "task-incremental"),
}


@pytest.fixture(scope="module")
def built():
    return {name: get_stream(name, seed=0) for name in EXPECTED}


def test_every_stream_is_registered_and_built_offline(built):
    # the benchmark streams read the user's folder (tests/test_streams_benchmarks.py)
    assert set(EXPECTED) | {"facts", "standard-cl", "long-sequence", "trace"} == set(STREAMS)
    for name, (tasks, scenario) in EXPECTED.items():
        assert built[name].task_names == tasks
        assert built[name].scenario.startswith(scenario)


@pytest.mark.parametrize("name,train,test", [("sentiment", 400, 200), ("topics", 300, 200)])
def test_choice_streams_have_balanced_splits_of_the_stated_size(built, name, train, test):
    for task in built[name].tasks:
        ev = task.eval["test"]
        assert len(task.train) == train and len(ev) == test
        assert Counter(ev["label"]) == {0: test // 2, 1: test // 2}
        assert Counter(task.train["completion"]) == {c: train // 2 for c in ev[0]["candidates"]}
        assert task.answers == ev[0]["candidates"] and "rejected" not in task.train.column_names
        # no text is both trained and scored
        assert not set(task.train["prompt"]) & set(ev["prompt"])
        assert all(p.endswith(("\nSentiment:", "\nKind of text:")) for p in ev["prompt"])


def test_sentiment_is_domain_incremental_with_one_label_set(built):
    s = built["sentiment"]
    assert {tuple(t.eval["test"][0]["candidates"]) for t in s.tasks} == {(" positive", " negative")}
    assert s.label_space(0, 3) is None  # every task keeps its own (identical) two answers
    assert s.options["valence_threshold"] == 1.0


def test_topics_label_space_grows_with_the_stages(built):
    t = built["topics"]
    assert [task.classes for task in t.tasks] == [[" film", " product"], [" opinion", " tweet"], [" news", " plot"]]
    assert t.label_space(0, -1) == [" film", " product"]  # base model, first task: its own labels
    assert t.label_space(2, -1) == [" film", " product", " opinion", " tweet", " news", " plot"]
    assert t.label_space(0, 1) == [" film", " product", " opinion", " tweet"]
    assert t.label_space(1, 1) == t.label_space(0, 1)


def test_instruction_tasks_hold_prompt_response_pairs(built):
    for task in built["instructions"].tasks:
        assert task.kind == "generation" and task.matrix_split == "test"
        ev = task.eval["test"]
        assert len(ev) == 25 and ev.column_names == ["prompt", "reference"]
        assert all(c.startswith(" ") and c.endswith("\n") and "\n" not in c[:-1] for c in task.train["completion"])
        assert not set(task.train["prompt"]) & set(ev["prompt"])
        assert len(task.train) >= 30


def test_mixed_stream_has_one_task_per_format_and_no_shared_labels(built):
    m = built["mixed"]
    assert [t.kind for t in m.tasks] == ["choice", "choice", "choice", "generation"]
    assert all(t.classes == [] for t in m.tasks) and m.label_space(2, 3) is None
    assert m.tasks[0].eval["train"][0]["candidates"] == [" friend", " enemy"]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_streams_are_deterministic_given_the_seed(built, name):
    again, other = get_stream(name, seed=0), get_stream(name, seed=1)
    for a, b, c in zip(built[name].tasks, again.tasks, other.tasks):
        assert a.train.to_dict() == b.train.to_dict()
        assert a.eval[a.matrix_split].to_dict() == b.eval[b.matrix_split].to_dict()
        assert a.train["prompt"] != c.train["prompt"]


def test_unknown_tasks_and_sources_are_refused():
    with pytest.raises(ContinualError, match="no task.*tv.*choose from movies"):
        sentiment_stream(tasks=["tv"])
    with pytest.raises(ContinualError, match="unknown source 'web'"):
        get_stream("topics", source="web")
    with pytest.raises(ContinualError, match="topics.train_size must be at least 1"):
        get_stream("topics", options={"train_size": 0})


def test_builders_reject_bad_templates_labels_and_sizes():
    from datasets import Dataset
    data = Dataset.from_dict({"text": [f"text {i}" for i in range(20)], "label": ["a", "b"] * 10})
    with pytest.raises(ContinualError, match="lacks the placeholder"):
        choice_task("t", data, {"a": " a", "b": " b"}, "no placeholder:", 4, 2, 0)
    with pytest.raises(ContinualError, match="label\\(s\\) 'b' are absent from the verbalizer"):
        choice_task("t", data, {"a": " a"}, "{text}:", 4, 2, 0)
    with pytest.raises(ContinualError, match="label 'a' has 10 distinct examples, fewer than the 12"):
        choice_task("t", data, {"a": " a", "b": " b"}, "{text}:", 20, 4, 0)
    pairs = Dataset.from_dict({"prompt": ["p1", "p2"], "response": ["r1", "r2"]})
    with pytest.raises(ContinualError, match="2 distinct prompts, fewer than test_size 5"):
        generation_task("g", pairs, 0, 5, 0)


def test_training_prompts_are_trimmed_from_the_left_to_keep_the_answer(tiny):
    from continual.streams.build import fit_to_length
    from continual.training import tokenize_completions
    stream = sentiment_stream(tasks=["editorials"])
    long_before = stream.tasks[0].train["prompt"]
    fit_to_length(stream, tiny.tokenizer, 40)  # the tiny tokenizer needs ~3 tokens a word
    task = stream.tasks[0]
    assert stream.options["training_prompts_trimmed_to_fit"] > 0
    encoded = tokenize_completions(task.train, tiny.tokenizer, 40)
    answer = len(tiny.tokenizer(" positive")["input_ids"])
    assert min(sum(t != -100 for t in labels) for labels in encoded["labels"]) >= answer - 1
    for before, after in zip(long_before, task.train["prompt"]):
        assert before.endswith(after) and after.endswith("\nSentiment:")


def test_list_shows_streams_tasks_sizes_and_sources(capsys, tmp_path, monkeypatch):
    from continual.cli import main
    from continual.streams import sources
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  topics         text classification, two new labels per task [class-incremental" in out
    assert "    - reviews: movie-review vs product-review snippets (VADER corpus): 300 train, 200 test" in out
    assert "answers film/product" in out and "ROUGE-L F1" in out
    assert "hub:     fancyzhx/ag_news" in out and "offline: chatterbot-corpus 1.3.3" in out
    monkeypatch.setenv("CONTINUAL_DATA_DIR", str(tmp_path))  # no VADER archive there
    monkeypatch.delenv("CONTINUAL_BENCHMARK_DIR", raising=False)
    sources._vader_files.cache_clear()
    try:
        assert main(["list"]) == 0
        out = capsys.readouterr().out
    finally:
        sources._vader_files.cache_clear()
    # sentiment and topics lack VADER (mixed needs no VADER data); the benchmark streams say how to get theirs
    assert out.count("data unavailable: ") == 2 + 3 and out.count("pass --data-dir DIR") == 3
    assert "    - hogwarts:" in out and "    - trivia:" in out and "    - sentiment:movies:" in out
