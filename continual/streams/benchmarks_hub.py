"""The Standard CL and Long Sequence tasks built from their original Hugging Face datasets (``--source hub``), with
the prompts of the benchmark copies: O-LoRA's category instruction, ``Option: `` and the labels in the copies'
order, the example in the copies' field layout (``Title: ...\\nText: ...``, ``sentence 1: ...``), then ``Answer:``.

Each task: its hub dataset (id, config), the split trained on and the labelled split scored, how a row's label
index reads as the benchmark's label string, and how its fields read as the example. Where a dataset has no
labelled test split (GLUE, SuperGLUE) the validation split is scored, as the papers do. ``eval`` (the validation
split of the folder layouts) is a seeded sample of the training split disjoint from the examples trained on.

Two tasks differ from the folder copies: agnews on the hub (fancyzhx/ag_news) holds title and description joined in
one ``text`` field, so its example reads ``Text: <title> <description>`` instead of ``Title: ...\\nText: ...``; and
amazon (Amazon Review Full, 5 classes) has no maintained hub copy, so it is refused with the way to its data.
TRACE's tasks are not on the hub in a form that matches its copies: trace reads a folder only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from continual.errors import ContinualError
from continual.streams import sources

POLARITY_GOOD_BAD = {0: "Bad", 1: "Good"}
FALSE_TRUE = {0: "False", 1: "True"}
STARS = {0: "very negative", 1: "negative", 2: "neutral", 3: "positive", 4: "very positive"}


@dataclass(frozen=True)
class HubTask:
    dataset: str
    config: str | None
    train: str  # the split trained on (and sampled for ``eval``)
    test: str  # the labelled split scored
    category: str  # O-LoRA's category: which instruction the prompt begins with
    labels: list[str]  # the benchmark's labels, in its Option order
    names: dict  # the dataset's label index -> the benchmark's label string
    label: str  # the label column
    example: Callable[[dict], str]  # a row's fields as the benchmark copies write them


def _field(row: dict, name: str) -> str:
    value = row.get(name)
    return "" if value is None else str(value)


HUB_TASKS = {
    "agnews": HubTask("fancyzhx/ag_news", None, "train", "test", "TC",
                      ["World", "Sports", "Business", "Science or Technology"],
                      {0: "World", 1: "Sports", 2: "Business", 3: "Science or Technology"}, "label",
                      lambda r: f"Text: {_field(r, 'text')}"),
    "dbpedia": HubTask("fancyzhx/dbpedia_14", None, "train", "test", "TC",
                       ["Company", "Educational Institution", "Artist", "Athlete", "Office Holder",
                        "Mean of Transportation", "Building", "Natural Place", "Village", "Animal", "Plant", "Album",
                        "Film", "Written Work"],
                       dict(enumerate(["Company", "Educational Institution", "Artist", "Athlete", "Office Holder",
                                       "Mean of Transportation", "Building", "Natural Place", "Village", "Animal",
                                       "Plant", "Album", "Film", "Written Work"])), "label",
                       lambda r: f"Title: {_field(r, 'title')}\nText: {_field(r, 'content')}"),
    "yahoo": HubTask("community-datasets/yahoo_answers_topics", None, "train", "test", "TC",
                     ["Society & Culture", "Science & Mathematics", "Health", "Education & Reference",
                      "Computers & Internet", "Sports", "Business & Finance", "Entertainment & Music",
                      "Family & Relationships", "Politics & Government"],
                     dict(enumerate(["Society & Culture", "Science & Mathematics", "Health", "Education & Reference",
                                     "Computers & Internet", "Sports", "Business & Finance", "Entertainment & Music",
                                     "Family & Relationships", "Politics & Government"])), "topic",
                     lambda r: f"Title: {_field(r, 'question_title')}\nQuestion: {_field(r, 'question_content')}\n"
                               f"{_field(r, 'best_answer')}"),
    "yelp": HubTask("fancyzhx/yelp_review_full", None, "train", "test", "SC", list(STARS.values()), STARS, "label",
                    lambda r: f"Text: {_field(r, 'text')}"),
    "IMDB": HubTask("stanfordnlp/imdb", None, "train", "test", "SC", ["Good", "Bad"], POLARITY_GOOD_BAD, "label",
                    lambda r: _field(r, "text")),
    "SST-2": HubTask("nyu-mll/glue", "sst2", "train", "validation", "SC", ["Good", "Bad"], POLARITY_GOOD_BAD,
                     "label", lambda r: f"Text: {_field(r, 'sentence')}"),
    "MNLI": HubTask("nyu-mll/glue", "mnli", "train", "validation_matched", "NLI",
                    ["neutral", "entailment", "contradiction"],
                    {0: "entailment", 1: "neutral", 2: "contradiction"}, "label",
                    lambda r: f"sentence 1: {_field(r, 'premise')}\nsentence 2: {_field(r, 'hypothesis')}"),
    "CB": HubTask("aps/super_glue", "cb", "train", "validation", "NLI", ["entailment", "contradiction", "neutral"],
                  {0: "entailment", 1: "contradiction", 2: "neutral"}, "label",
                  lambda r: f"sentence 1: {_field(r, 'premise')}\nsentence 2: {_field(r, 'hypothesis')}"),
    "RTE": HubTask("nyu-mll/glue", "rte", "train", "validation", "NLI", ["contradiction", "entailment"],
                   {0: "entailment", 1: "contradiction"}, "label",  # GLUE's not_entailment is the copies' contradiction
                   lambda r: f"sentence 1: {_field(r, 'sentence1')}\nsentence 2: {_field(r, 'sentence2')}"),
    "QQP": HubTask("nyu-mll/glue", "qqp", "train", "validation", "QQP", ["False", "True"], FALSE_TRUE, "label",
                   lambda r: f"first sentence: {_field(r, 'question1')}\nsecond sentence: {_field(r, 'question2')}"),
    "BoolQA": HubTask("aps/super_glue", "boolq", "train", "validation", "BoolQA", ["True", "False"], FALSE_TRUE,
                      "label", lambda r: f"question: {_field(r, 'question')}\npassage: {_field(r, 'passage')}"),
    "WiC": HubTask("aps/super_glue", "wic", "train", "validation", "WiC", ["True", "False"], FALSE_TRUE, "label",
                   lambda r: f"word: {_field(r, 'word')}\n{_field(r, 'sentence1')}\n{_field(r, 'sentence2')}"),
    "MultiRC": HubTask("aps/super_glue", "multirc", "train", "validation", "MultiRC", ["False", "True"], FALSE_TRUE,
                       "label", lambda r: f"paragraph: {_field(r, 'paragraph')}\nquestion: {_field(r, 'question')}\n"
                                          f"candidate answer: {_field(r, 'answer')}"),
    # COPA's example carries its own question and the two choices; its category has no instruction
    "COPA": HubTask("aps/super_glue", "copa", "train", "validation", "COPA", ["A", "B"], {0: "A", 1: "B"}, "label",
                    lambda r: f"Which sentence is the {_field(r, 'question')} of \"{_field(r, 'premise')}\"? Choose "
                              f"one between A and B.\nA: {_field(r, 'choice1')}\nB: {_field(r, 'choice2')}"),
}
NOT_ON_HUB = {"amazon": "Amazon Review Full (5 classes) has no maintained copy on the hub"}

# sizes when train_size / test_size are 0: the papers' 1,000 training examples per class; the test split up to 500
# per class (some hub splits hold hundreds of thousands of rows)
TRAIN_PER_CLASS, TEST_PER_CLASS = 1000, 500


def _labelled(task: HubTask, data, order: list[int], skip: int, size: int) -> list[dict]:
    """The first ``size`` labelled rows in ``order`` after the first ``skip`` labelled ones, as {sentence, answer}
    (unlabelled rows, -1 in GLUE's and IMDB's extra splits, are passed over)."""
    rows, seen = [], 0
    for i in order:
        row = data[i]
        if row[task.label] not in task.names:
            continue
        seen += 1
        if seen > skip:
            rows.append({"sentence": task.example(row), "answer": task.names[row[task.label]]})
            if len(rows) == size:
                break
    return rows


def hub_splits(name: str, train_size: int, test_size: int, eval_split: str, seed: int, stream: str,
               get_data: str) -> tuple[list[dict], list[dict], list[str]]:
    """(train rows, scored rows, labels) of one task from its hub dataset; rows are {sentence, answer}. The rows
    are drawn in a seeded order of each split; ``eval`` takes the training split's rows after those trained on."""
    if name in NOT_ON_HUB:
        raise ContinualError(f"{stream} task '{name}': {NOT_ON_HUB[name]}; {get_data}, or leave it out "
                             f"(--stream-option {stream}.tasks=...)")
    if name not in HUB_TASKS:
        raise ContinualError(f"{stream} task '{name}' has no hub variant; {get_data}")
    task = HUB_TASKS[name]
    train_size = train_size or TRAIN_PER_CLASS * len(task.labels)
    test_size = test_size or TEST_PER_CLASS * len(task.labels)
    source = f"hub dataset '{task.dataset}'" + (f" ({task.config})" if task.config else "")

    def ordered(split: str):
        data = sources.load_hub(task.dataset, split, task.config)
        sources.require_columns(data, [task.label], source)
        order = list(range(len(data)))
        random.Random(f"{stream}:{name}:{split}:{seed}").shuffle(order)
        return data, order

    data, order = ordered(task.train)
    train = _labelled(task, data, order, 0, train_size)
    if eval_split == "eval":
        scored, split = _labelled(task, data, order, len(train), test_size), task.train
    else:
        scored, split = _labelled(task, *ordered(task.test), 0, test_size), task.test
    for rows, which in ((train, task.train), (scored, split)):
        if not rows:
            raise ContinualError(f"{stream} task '{name}': {source} split '{which}' has no labelled rows left to "
                                 f"{'train on' if rows is train else 'score'}")
    return train, scored, task.labels
