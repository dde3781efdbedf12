"""The facts stream: friend/enemy relations between characters, one fictional world per task.

Each world has two camps; everybody is a friend of their own camp and an enemy of the other (as in the seed
notebooks). A fact reads "A is B's friend." For every world the unordered pairs are split, stratified by relation,
into trained pairs and held-out pairs. Three evaluation splits are scored:

  train     the trained facts themselves (this split fills the accuracy matrix: what was learned and can be lost)
  reversed  the trained pairs with the names swapped ("B is A's ..."): relations are symmetric
  heldout   pairs never trained on: right only if the model learned the camps, not the sentences

Which name comes first is balanced in every split (exactly half each way, within each relation) so that a model
cannot score by learning name order instead of camps (see shared/NOTES.md).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations

from datasets import Dataset

from continual.errors import ContinualError
from continual.options import Options, option
from continual.streams.task import Stream, Task

RELATIONS = ("friend", "enemy")  # candidate order; label 0 = friend
CANDIDATES = [" " + r for r in RELATIONS]


@dataclass(frozen=True)
class World:
    title: str
    camps: tuple[tuple[str, ...], tuple[str, ...]]


WORLDS = {
    "hogwarts": World("Harry Potter", (
        ("Harry Potter", "Hermione Granger", "Ron Weasley", "Albus Dumbledore", "Rubeus Hagrid",
         "Minerva McGonagall", "Sirius Black", "Neville Longbottom"),
        ("Lord Voldemort", "Bellatrix Lestrange", "Lucius Malfoy", "Peter Pettigrew", "Dolores Umbridge",
         "Fenrir Greyback", "Antonin Dolohov", "Walden Macnair"),
    )),
    "middle-earth": World("The Lord of the Rings", (
        ("Frodo Baggins", "Samwise Gamgee", "Gandalf", "Aragorn", "Legolas", "Gimli", "Elrond", "Galadriel"),
        ("Sauron", "Saruman", "Grima Wormtongue", "Gothmog", "Lurtz", "Shelob", "Azog", "Ugluk"),
    )),
    "galaxy": World("Star Wars", (
        ("Luke Skywalker", "Leia Organa", "Han Solo", "Obi-Wan Kenobi", "Yoda", "Chewbacca", "Lando Calrissian",
         "Padme Amidala"),
        ("Darth Vader", "Emperor Palpatine", "Darth Maul", "Count Dooku", "Grand Moff Tarkin", "Boba Fett",
         "Jabba the Hutt", "General Grievous"),
    )),
}


@dataclass
class FactsOptions(Options):
    camp_size: int = option(8, "characters per camp (the worlds shrink to their first N of each camp)", low=2, high=8)
    heldout_fraction: float = option(0.25, "share of each relation's pairs held out, never trained", low=0,
                                     low_open=True, high=0.99)


def build(seed: int, source: str, options: FactsOptions) -> Stream:
    """The registry's entry: the facts are generated, the same for every source."""
    return facts_stream(seed, camp_size=options.camp_size, heldout_fraction=options.heldout_fraction)


def fact_prompt(first: str, second: str) -> str:
    return f"{first} is {second}'s"


def facts_stream(seed: int = 0, worlds: list[str] | None = None, camp_size: int = 8,
                 heldout_fraction: float = 0.25) -> Stream:
    """Build the stream. ``worlds`` picks and orders the tasks; ``camp_size`` characters per camp (2..8)."""
    worlds = list(worlds or WORLDS)
    unknown = [w for w in worlds if w not in WORLDS]
    if unknown:
        raise ContinualError(f"unknown facts world(s) {unknown}; choose from {list(WORLDS)}")
    if len(set(worlds)) != len(worlds):
        raise ContinualError(f"facts worlds repeat: {worlds}; name each world once")
    if not 2 <= camp_size <= 8:
        raise ContinualError(f"facts camp_size must be between 2 and 8, got {camp_size}")
    if not 0 < heldout_fraction < 1:
        raise ContinualError(f"facts heldout_fraction must be between 0 and 1 (exclusive), got {heldout_fraction}")
    tasks = [world_task(w, seed, camp_size, heldout_fraction) for w in worlds]
    options = {"worlds": worlds, "camp_size": camp_size, "heldout_fraction": heldout_fraction}
    return Stream("facts", tasks, scenario="task-incremental (new entities, same relation labels)",
                  description="friend/enemy relations, one fictional world per task", options=options)


def world_task(key: str, seed: int, camp_size: int, heldout_fraction: float) -> Task:
    world = WORLDS[key]
    camp_a, camp_b = (camp[:camp_size] for camp in world.camps)
    camp_of = {name: 0 for name in camp_a} | {name: 1 for name in camp_b}
    rng = random.Random(f"facts:{seed}:{key}")  # str seeds hash with sha512: stable across processes

    train_pairs, heldout_pairs = [], []
    for relation in RELATIONS:  # stratify the split by relation
        pairs = [(a, b) for a, b in combinations(camp_a + camp_b, 2)
                 if (camp_of[a] == camp_of[b]) == (relation == "friend")]
        rng.shuffle(pairs)
        n_heldout = max(1, round(len(pairs) * heldout_fraction))
        heldout_pairs += _balance_order(pairs[:n_heldout], relation)
        train_pairs += _balance_order(pairs[n_heldout:], relation)
    rng.shuffle(train_pairs)
    rng.shuffle(heldout_pairs)

    def eval_split(pairs):
        return Dataset.from_dict({
            "prompt": [fact_prompt(a, b) for a, b, _ in pairs],
            "candidates": [CANDIDATES] * len(pairs),
            "label": [RELATIONS.index(rel) for _, _, rel in pairs],
        })

    reversed_pairs = [(b, a, rel) for a, b, rel in train_pairs]
    train = Dataset.from_dict({
        "prompt": [fact_prompt(a, b) for a, b, _ in train_pairs],
        "completion": [f" {rel}." for _, _, rel in train_pairs],  # a candidate answer, then the sentence's end
    })
    return Task(name=key, train=train,
                eval={"train": eval_split(train_pairs), "reversed": eval_split(reversed_pairs),
                      "heldout": eval_split(heldout_pairs)},
                matrix_split="train",
                description=f"{world.title}: {len(camp_a)} vs {len(camp_b)} characters, "
                            f"{len(train_pairs)} trained facts, {len(heldout_pairs)} held-out pairs")


def _balance_order(pairs: list[tuple[str, str]], relation: str) -> list[tuple[str, str, str]]:
    """Put exactly half the (already shuffled) pairs in list order and half swapped."""
    return [(a, b, relation) if i % 2 == 0 else (b, a, relation) for i, (a, b) in enumerate(pairs)]
