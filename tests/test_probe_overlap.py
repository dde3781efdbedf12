"""No cloze probe item (continual/probes/cloze.yaml) is taught by any built-in stream's training data (offline
sources): a pair teaches an item when its completion holds the item's answer and its prompt most of the item's
content words (``probe_overlap``). The instructions stream drops the pairs this rule finds in its offline data
(continual.streams.instructions.TEACHES_PROBE); these tests keep that list complete."""
import functools
import re

import pytest

from continual.probes.cloze import load_cloze_items
from continual.streams import get_stream
from continual.streams import sources
from continual.streams.instructions import TEACHES_PROBE

_STOP = {"the", "of", "is", "in", "a", "an", "was", "by", "to", "and", "that", "what", "which", "who", "on", "for",
         "with", "has", "are", "its", "from", "as", "at", "first"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


@functools.lru_cache(maxsize=1)
def _cloze_items() -> list[dict]:
    return load_cloze_items()


def probe_overlap(prompt: str, completion: str) -> str | None:
    """The cloze probe item a training pair teaches, or None. A pair teaches an item when its completion holds every
    word of the item's answer and its prompt at least two thirds (and at least two) of the item's content words
    (words of 3+ letters outside a short stop list): "What is the largest planet in our solar system?" ->
    "Jupiter" teaches "The largest planet in our solar system is" -> Jupiter; "Which country produces the most
    coffee?" -> "Brazil" shares 2 of the Amazon item's 5 content words and does not."""
    answer, asked = _words(completion), _words(prompt)
    for item in _cloze_items():
        content = {w for w in _words(item["prompt"]) if w not in _STOP and len(w) > 2}
        shared = len(content & asked)
        if _words(item["answer"]) <= answer and shared >= 2 and 3 * shared >= 2 * len(content):
            return item["prompt"]
    return None

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
    teaching = []
    for category in ("trivia", "emotion", "conversations", "ai"):
        pairs = sources.chatterbot_pairs(category)
        teaching += [p for p, c in zip(pairs["prompt"], pairs["response"]) if probe_overlap(p, c) is not None]
    assert sorted(teaching) == sorted(TEACHES_PROBE)  # the stream's list is what the rule finds
    trivia = get_stream("instructions", seed=0).tasks[0]
    assert not {p for p in trivia.train["prompt"] if "largest planet" in p or "largest ocean" in p}
    assert len(_cloze_items()) > 50  # the rule read the probe's own item file
