"""The instructions stream: task-incremental instruction tuning, one instruction category per task.

Training is on the response only (prompt/completion examples). Each task is scored by ROUGE-L F1 between greedy
generations and the reference responses of held-out prompts (continual/generation.py); the mean per-token
log-likelihood of the reference is recorded beside it.

offline (default): chatterbot-corpus English conversations by category (consecutive turns as prompt -> response,
    one response per distinct prompt): trivia, emotion, conversations, ai. Training pairs that teach a fact the cloze
    retention probe asks (continual/probes/cloze.yaml: "What is the largest planet in our solar system?" ->
    "Jupiter", the largest ocean -> "The Pacific Ocean") are dropped from the training split (``probe_overlap``): a
    run trained on them would score the probe's items as retained knowledge it was just taught. The probe keeps
    them: they are ordinary general knowledge, the stream is where the leak is.
hub: databricks-dolly-15k categories (open_qa, classification, creative_writing), then tatsu-lab/alpaca.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from continual.options import Options, option
from continual.streams import sources
from continual.streams.build import generation_task, select_tasks
from continual.streams.task import Stream

OFFLINE = {"trivia": "general-knowledge questions with short answers",
           "emotion": "remarks about feelings and the replies of a chatbot",
           "conversations": "small talk",
           "ai": "questions about artificial intelligence and the bot itself"}
HUB = {"open_qa": "dolly-15k open_qa", "classification": "dolly-15k classification",
       "creative_writing": "dolly-15k creative_writing", "alpaca": "tatsu-lab/alpaca"}


@dataclass
class InstructionsOptions(Options):
    train_size: int = option(0, "training pairs per task (0: every pair not held out; the hub source takes 400)", low=0)
    test_size: int = option(25, "held-out evaluation examples per task", low=1)


def build(seed: int, source: str, options: InstructionsOptions) -> Stream:
    return instructions_stream(seed, source, train_size=options.train_size, test_size=options.test_size)


def instructions_stream(seed: int = 0, source: str = "offline", tasks: list[str] | None = None, train_size: int = 0,
                        test_size: int = 25) -> Stream:
    """``train_size`` 0: every pair not held out (offline categories hold 60-280 prompts); hub tasks take 400."""
    table, names = select_tasks("instructions", source, OFFLINE, HUB, tasks)
    if source == "hub":
        train_size = train_size or 400
        dolly = None
        if any(n != "alpaca" for n in names):
            dolly = sources.dolly_pairs(sources.load_hub(*sources.HUB_DOLLY))
    built = []
    for name in names:
        if source == "offline":
            pairs = sources.chatterbot_pairs(name)
        elif name == "alpaca":
            alpaca = sources.load_hub(*sources.HUB_ALPACA)
            pairs = sources.alpaca_pairs(alpaca.shuffle(seed=seed).select(range(min(len(alpaca), 4000))))
        else:
            pairs = dolly.filter(lambda r, c=name: r["category"] == c)
        task = generation_task(name, pairs, train_size, test_size, seed)
        if source == "offline":
            task.train = task.train.filter(lambda r: probe_overlap(r["prompt"], r["completion"]) is None)
        task.description = f"{table[name]}: {len(task.train)} train, {len(task.eval['test'])} test pairs"
        built.append(task)
    return Stream("instructions", built, scenario="task-incremental (one instruction category per task)",
                  description="instruction -> response pairs, one category per task (score: ROUGE-L F1)",
                  options={"source": source, "tasks": names, "train_size": train_size, "test_size": test_size})


_STOP = {"the", "of", "is", "in", "a", "an", "was", "by", "to", "and", "that", "what", "which", "who", "on", "for",
         "with", "has", "are", "its", "from", "as", "at", "first"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


@functools.lru_cache(maxsize=1)
def _cloze_items() -> list[dict]:
    path = Path(__file__).resolve().parent.parent / "probes" / "cloze.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))["items"]


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
