"""Generative replay: it keeps no earlier training example, its pseudo-examples come from the model (same seed, same
examples; another model, other examples), and they are recorded in the run directory."""

import torch

import continual
from strategies.generative_replay import (GenerativeReplay, GenerativeReplayOptions, cut_before_answer, sketch)
from tests.conftest import StageRunner

OPTIONS = GenerativeReplayOptions(samples=6, seeds=4, max_new_tokens=8, ratio=0.5)


def test_a_one_line_prompt_ends_before_the_answer_the_model_wrote():
    assert cut_before_answer("Ron Weasley is Harry Potter's friend.", [" friend", " enemy"]) == \
        ("Ron Weasley is Harry Potter's", " friend")
    assert cut_before_answer("Ron Weasley is tall", [" friend", " enemy"]) == ("Ron Weasley is tall", None)


def test_what_it_keeps_of_a_task_is_its_format_and_prompt_beginnings():
    runner = StageRunner(GenerativeReplay(OPTIONS))
    task = runner.stream.tasks[0]
    kept = sketch(task, seeds=4, head_words=3, seed=0)
    assert kept.answers == [" friend", " enemy"] and kept.suffix == "." and kept.cue == ""
    prompts, completions = set(task.train["prompt"]), set(task.train["completion"])
    for head in kept.heads:
        assert head not in prompts and any(p.startswith(head) for p in prompts)  # a strict beginning, no more
    texts = [kept.cue, kept.suffix, *kept.heads]
    assert not (set(texts) & (prompts | completions))


def pseudo(model_seed_offset=0.0):
    runner = StageRunner(GenerativeReplay(OPTIONS), steps=2, lr=1e-2)
    runner.stage(0)
    if model_seed_offset:
        with torch.no_grad():
            for p in runner.model.parameters():
                p.add_(model_seed_offset)
    runner.strategy.before_stage(runner.model, runner.context(1))
    return runner, runner.strategy.pseudo


def test_pseudo_examples_come_from_the_model_and_repeat_with_the_seed():
    runner, first = pseudo()
    _, again = pseudo()
    _, other = pseudo(1e-2)
    assert first and first == again and first != other
    assert {e["task"] for e in first} == {"hogwarts"}
    assert all(e["completion"] in (" friend.", " enemy.") for e in first)
    state = runner.strategy.state_dict()
    assert set(state) == {"sketches"} and "examples" not in str(state)  # nothing but the sketches is kept
    mixed = runner.strategy.mix_batches([[{"prompt": "x", "completion": " y"}] * 4] * 2, runner.context(1))
    assert all(sum(e in first for e in b) == 2 for b in mixed)  # ratio 0.5 of a batch of 4


def test_the_run_directory_records_what_was_generated(tmp_path):
    result = continual.run(stream="facts", strategy="generative-replay", model="tiny", steps=2, batch_size=4,
                           stream_options={"facts.camp_size": 2}, probe="cloze", progress=False, plots=False,
                           strategy_options={"generative-replay.samples": 4}, out=str(tmp_path / "run"))
    files = sorted((result.path / "strategy" / "generative_replay").glob("*.csv"))
    assert [f.name for f in files] == ["stage1.csv", "stage2.csv"]
    import pandas as pd
    stage2 = pd.read_csv(files[1])
    assert set(stage2["task"]) <= {"hogwarts", "middle-earth"} and len(stage2) > 0
