"""No example with zero answer tokens reaches a loss: tokenize_completions (used by training, replay's batches,
distil's general text, A-GEM's memory, EWC's Fisher, bench) drops them with a count, and refuses when none is left."""
import logging

import pytest
from datasets import Dataset

from continual.errors import ContinualError
from continual.scoring import split_continuation
from continual.training import IGNORE, tokenize_completions

# tiny tokenizer: prompts of 42, 16 and 9 tokens
DATA = Dataset.from_dict({
    "prompt": ["In the old tales told by the river, the wizard was known to all as",
               "Harry Potter is Lord Voldemort's", "Gimli is Sauron's"],
    "completion": [" the grey wanderer", " enemy.", " enemy."]})


def test_examples_with_no_answer_token_are_dropped_and_counted(tiny, caplog):
    tok = tiny.tokenizer
    lengths = [len(split_continuation(tok, p, c)[0]) for p, c in zip(DATA["prompt"], DATA["completion"])]
    assert lengths == [42, 16, 9]
    with caplog.at_level(logging.WARNING, logger="continual.training"):
        encoded = tokenize_completions(DATA, tok, max_length=16)
    assert len(encoded) == 1  # 42 and 16 prompt tokens leave no answer token in 16; the 9-token prompt keeps 2
    ctx, cont = split_continuation(tok, DATA["prompt"][2], DATA["completion"][2])
    assert encoded[0]["labels"] == [IGNORE] * 9 + cont
    assert "2 of 3 examples keep no answer token within max_length 16: dropped" in caplog.text
    assert len(tokenize_completions(DATA, tok, max_length=17)) == 2  # the 16-token prompt now keeps one token
    assert len(tokenize_completions(DATA, tok, max_length=64)) == 3
    assert all(any(t != IGNORE for t in r["labels"]) for r in tokenize_completions(DATA, tok, max_length=17))


def test_all_examples_without_an_answer_token_is_an_error(tiny):
    with pytest.raises(ContinualError, match="all 3 examples keep no answer token within max_length 9 .*raise "
                                             "--max-length"):
        tokenize_completions(DATA, tiny.tokenizer, max_length=9)


def test_a_training_stage_never_sees_an_example_without_answer_tokens(tiny):
    """Through sft_trainer: the trainer's dataset holds only examples with answer tokens, and a dropped example's
    slot is filled from its own batch, so the next step still reads the batch planned for it."""
    from continual.training import StageSettings, sft_trainer
    from strategies.naive import Naive
    examples = [{"prompt": p, "completion": c} for p, c in zip(DATA["prompt"], DATA["completion"])]
    later = [{"prompt": "Frodo is Sauron's", "completion": " enemy."}, {"prompt": "Ron is Harry's",
                                                                         "completion": " friend."}]
    batches = [examples[:2] + examples[2:], later + later[:1]]  # step 1: 42, 16 and 9 prompt tokens
    settings = StageSettings(steps=2, batch_size=3, lr=1e-3, seed=0, device="cpu", max_length=16)
    trainer = sft_trainer(tiny.model, tiny.tokenizer, batches, settings, Naive(), [])
    rows = list(trainer.train_dataset)
    assert len(rows) == 6 and all(any(t != IGNORE for t in r["labels"]) for r in rows)
    expected = [split_continuation(tiny.tokenizer, e["prompt"], e["completion"]) for e in
                [examples[2]] * 3 + later + later[:1]]
    assert [r["input_ids"] for r in rows] == [ctx + cont for ctx, cont in expected]


def test_a_step_left_with_no_answer_token_is_refused(tiny):
    from continual.training import StageSettings, sft_trainer
    from strategies.naive import Naive
    batches = [[{"prompt": DATA["prompt"][2], "completion": DATA["completion"][2]}],
               [{"prompt": DATA["prompt"][0], "completion": DATA["completion"][0]}]]
    settings = StageSettings(steps=2, batch_size=1, lr=1e-3, seed=0, device="cpu", max_length=16)
    with pytest.raises(ContinualError, match="no example of training step 2 keeps an answer token within "
                                             "max_length 16: raise --max-length"):
        sft_trainer(tiny.model, tiny.tokenizer, batches, settings, Naive(), [])
