"""The instructions stream: task-incremental instruction tuning, one instruction category per task.

Training is on the response only (prompt/completion examples). Each task is scored by ROUGE-L F1 between greedy
generations and the reference responses of held-out prompts (continual/generation.py); the mean per-token
log-likelihood of the reference is recorded beside it.

offline (default): chatterbot-corpus English conversations by category (consecutive turns as prompt -> response,
    one response per distinct prompt): trivia, emotion, conversations, ai. The pairs that teach a fact the
    retention probe asks ("What is the largest planet in our solar system?" -> "Jupiter", the largest ocean -> "The
    Pacific Ocean"; TEACHES_PROBE) are dropped from the training split: a run trained on them would score those
    items as knowledge kept when it was just taught. tests/test_probe_overlap.py finds such pairs by rule in every
    built-in stream, so this list stays complete when the probe's items or the data change.
hub: databricks-dolly-15k categories (open_qa, classification, creative_writing), then tatsu-lab/alpaca.
"""

from __future__ import annotations

from dataclasses import dataclass

from continual.options import Options, option
from continual.streams import sources
from continual.streams.build import generation_task, select_tasks
from continual.streams.task import Stream

OFFLINE = {"trivia": "general-knowledge questions with short answers",
           "emotion": "remarks about feelings and the replies of a chatbot",
           "conversations": "small talk",
           "ai": "questions about artificial intelligence and the bot itself"}
# Chatterbot prompts whose answers hold items of the retention probe (see the module docstring); the Zen of Python
# line pairs "better than" with "never", the answer of the probe's "Better late than ..."
TEACHES_PROBE = ("What is the largest planet in our solar system?", "What is the name of the Earth’s largest ocean?",
                 "Now is better than never.")
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
            # select, not Dataset.filter: filter draws a progress bar per task in `continual list` and builds
            task.train = task.train.select([i for i, prompt in enumerate(task.train["prompt"])
                                            if not any(q in prompt for q in TEACHES_PROBE)])
        task.description = f"{table[name]}: {len(task.train)} train, {len(task.eval['test'])} test pairs"
        built.append(task)
    return Stream("instructions", built, scenario="task-incremental (one instruction category per task)",
                  description="instruction -> response pairs, one category per task (score: ROUGE-L F1)",
                  options={"source": source, "tasks": names, "train_size": train_size, "test_size": test_size})
