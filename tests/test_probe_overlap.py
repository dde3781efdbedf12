"""No cloze probe item (continual/probes/cloze.yaml) is taught by any built-in stream's training data (offline
sources): a pair teaches an item when its completion holds the item's answer and its prompt most of the item's
content words (continual.streams.instructions.probe_overlap)."""
import re

import pytest

from continual.streams import get_stream
from continual.streams import sources
from continual.streams.instructions import _cloze_items, probe_overlap

BUILT_IN = ["facts", "sentiment", "topics", "instructions", "mixed"]


def test_the_rule_finds_the_known_overlaps_and_not_a_near_miss():
    assert probe_overlap("Instruction: What is the largest planet in our solar system?\nResponse:", " Jupiter\n") \
        == "The largest planet in our solar system is"
    assert probe_overlap("Instruction: What is the name of the Earth’s largest ocean?\nResponse:",
                         " The Pacific Ocean\n") == "The largest ocean on Earth is the"
    assert probe_overlap("Instruction: Which country produces the most coffee in the world?\nResponse:",
                         " Brazil\n") is None  # another fact with the same answer
    assert probe_overlap("Text: Set in 1989, the week the Berlin Wall came down.\nKind of text:", " plot") is None


@pytest.mark.parametrize("name", BUILT_IN)
def test_no_probe_item_is_in_a_built_in_streams_training_data(name):
    stream = get_stream(name, seed=0)
    taught = [(task.name, r["prompt"], probe_overlap(r["prompt"], r["completion"]))
              for task in stream.tasks for r in task.train.to_list()]
    assert [t for t in taught if t[2] is not None] == []
    largest = [p for _, p, _ in taught if re.search(r"largest (planet|ocean)", p, re.I)]
    assert largest == []


def test_the_instructions_stream_drops_exactly_the_pairs_that_teach_probe_items():
    pairs = sources.chatterbot_pairs("trivia")
    teaching = [p for p, c in zip(pairs["prompt"], pairs["response"]) if probe_overlap(p, c) is not None]
    assert len(teaching) == 2 and all("largest" in p for p in teaching)
    trivia = get_stream("instructions", seed=0).tasks[0]
    assert not {p for p in trivia.train["prompt"] if "largest planet" in p or "largest ocean" in p}
    assert len(_cloze_items()) > 50  # the rule read the probe's own item file
