"""evaluate_stream: the label space of class-incremental streams by stage, and generation tasks (ROUGE-L)."""

import math
import re

import numpy as np
import pytest
from datasets import Dataset

import continual.evaluation as evaluation
from continual.answer_metrics import rougeL_f1 as rouge_l
from continual.generation import generate_greedy, reference_loglik
from continual.scoring import CandidateScores
from continual.streams.build import choice_task, generation_task
from continual.streams.task import Stream
from strategies import make_strategy

LABELS = [["ant", "bee"], ["cat", "dog"], ["eel", "fox"]]


def labelled(labels, n=12):
    return Dataset.from_dict({"text": [f"{lab} example {i}" for i in range(n) for lab in labels],
                              "label": [lab for _ in range(n) for lab in labels]})


def class_stream(scenario="class-incremental"):
    tasks = [choice_task(f"t{k}", labelled(labels), {lab: f" {lab}" for lab in labels}, "{text} ->", 8, 4, 0)
             for k, labels in enumerate(LABELS)]
    return Stream("toy", tasks, scenario=scenario)


@pytest.fixture
def recorded(monkeypatch):
    """score_candidates stand-in: records each call's candidates and always puts the gold answer first, where the
    gold answer is read from the prompt ("<label> example i ->")."""
    calls = []

    def fake(model, tokenizer, prompts, candidates, **kw):
        calls.append(candidates)
        logprob = [np.array([0.0 if c.strip() == p.split()[0] else -5.0 for c in cands])
                   for p, cands in zip(prompts, candidates)]
        return CandidateScores(logprob, [np.ones(len(c), dtype=int) for c in candidates])
    monkeypatch.setattr(evaluation, "score_candidates", fake)
    return calls


@pytest.mark.parametrize("stage", [-1, 0, 1, 2])
def test_class_incremental_rows_are_scored_over_exactly_the_labels_seen(recorded, stage):
    stream = class_stream()
    rows = evaluation.evaluate_stream(None, None, stream, make_strategy("naive"), "after", stage)
    for j, (row, candidates) in enumerate(zip(rows, recorded)):
        seen = [f" {lab}" for labels in LABELS[:max(stage, j) + 1] for lab in labels]
        assert all(c == seen for c in candidates), (stage, j)
        assert row["n_labels"] == len(seen)
        assert row["accuracy"] == 1.0  # gold indices were remapped into the larger label space


def test_task_incremental_rows_keep_each_tasks_own_candidates(recorded):
    stream = class_stream("task-incremental")
    rows = evaluation.evaluate_stream(None, None, stream, make_strategy("naive"), "s", 2)
    assert [c[0] for c in recorded] == [[" ant", " bee"], [" cat", " dog"], [" eel", " fox"]]
    assert [r["n_labels"] for r in rows] == [2, 2, 2]


def instruction_stream(n=10):
    pairs = Dataset.from_dict({"prompt": [f"Say the word number {i}" for i in range(n)],
                               "response": [f"word {i}" for i in range(n)]})
    return Stream("ins", [generation_task("say", pairs, 0, 4, 0)], scenario="task-incremental")


def test_generation_rows_hold_rouge_and_reference_loglik(tiny, monkeypatch):
    stream = instruction_stream()
    rows = evaluation.evaluate_stream(tiny.model, tiny.tokenizer, stream, make_strategy("naive"), "base", -1)
    (row,) = rows
    assert row["metric"] == "rougeL_f1" and row["n"] == 4 and math.isnan(row["accuracy_norm"])
    assert 0.0 <= row["accuracy"] <= 1.0 and row["ref_loglik"] < 0
    # a model that answers with the references scores 1
    monkeypatch.setattr(evaluation, "generate_greedy", lambda m, t, prompts, *a, **k: [
        "word " + re.search(r"number (\d+)", p).group(1) for p in prompts])
    perfect = evaluation.evaluate_stream(tiny.model, tiny.tokenizer, stream, make_strategy("naive"), "base", -1)
    assert perfect[0]["accuracy"] == 1.0


def test_eval_cap_limits_generation_too(tiny):
    rows = evaluation.evaluate_stream(tiny.model, tiny.tokenizer, instruction_stream(), make_strategy("naive"), "b",
                                      -1, cap=2)
    assert rows[0]["n"] == 2


def test_rouge_l_f1_values():
    scores = rouge_l(["the cat sat", "the cat", "", "dogs run"],
                     ["the cat sat", "the cat sat on", "a b", "dog running"])
    assert scores[0] == 1.0 and scores[1] == pytest.approx(2 / 3) and scores[2] == 0.0
    assert scores[3] == 1.0  # Porter stemming: dogs/dog, run/running


def test_batched_left_padded_generation_equals_one_by_one(tiny):
    prompts = ["Instruction: a\nResponse:", "Instruction: a much longer prompt than the others here\nResponse:",
               "Instruction: mid length one\nResponse:"]
    batched = generate_greedy(tiny.model, tiny.tokenizer, prompts, max_new_tokens=6, batch_size=3)
    single = [generate_greedy(tiny.model, tiny.tokenizer, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single
    assert all("\n" not in g for g in batched)


def test_reference_loglik_is_a_mean_per_token(tiny):
    one = reference_loglik(tiny.model, tiny.tokenizer, ["Say:"], ["hello"])
    two = reference_loglik(tiny.model, tiny.tokenizer, ["Say:"], ["hello hello hello"])
    assert one.shape == (1,) and one[0] < 0 and two[0] < 0 and one[0] != two[0]


def test_standard_errors_follow_the_binomial_and_sample_formulas():
    assert evaluation.standard_error([1, 0, 1, 1]) == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert evaluation.standard_error([1, 1, 1]) == 0.0
    graded = [0.2, 0.5, 0.9]
    assert evaluation.standard_error(graded) == pytest.approx(np.std(graded, ddof=1) / math.sqrt(3))
    assert math.isnan(evaluation.standard_error([])) and math.isnan(evaluation.standard_error([0.4]))


def test_score_rows_carry_the_binomial_standard_error_of_their_accuracy(monkeypatch):
    """Every other example answered wrong: accuracy 0.5 over n examples, stderr sqrt(0.25 / n)."""
    calls = []

    def half_right(model, tokenizer, prompts, candidates, **kw):
        calls.append(1)
        logprob = [np.array([0.0 if (c.strip() == p.split()[0]) == (i % 2 == 0) else -5.0 for c in cands])
                   for i, (p, cands) in enumerate(zip(prompts, candidates))]
        return CandidateScores(logprob, [np.ones(len(c), dtype=int) for c in candidates])
    monkeypatch.setattr(evaluation, "score_candidates", half_right)
    stream = class_stream("task-incremental")
    rows = evaluation.evaluate_stream(None, None, stream, make_strategy("naive"), "base", -1)
    for row in rows:
        assert row["accuracy"] == pytest.approx(0.5)
        assert row["stderr"] == pytest.approx(math.sqrt(0.25 / row["n"]))
