"""The mixed stream: one task from each stream, in the order facts -> sentiment -> topics -> instructions
(task-incremental across formats: relations, sentiment labels, genre/topic labels, free-text responses).

Each task keeps its own answers (no label space is shared across formats). ``source`` applies to the last three;
the facts task is generated and the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass

from continual.options import Options, option
from continual.streams.facts import facts_stream
from continual.streams.instructions import instructions_stream
from continual.streams.sentiment import sentiment_stream
from continual.streams.task import Stream
from continual.streams.topics import topics_stream

# one task of each stream per source (offline: topics "stories" shares no text with sentiment "movies")
PICKS = {"offline": {"sentiment": "movies", "topics": "stories", "instructions": "trivia"},
         "hub": {"sentiment": "movies", "topics": "world-sports", "instructions": "open_qa"}}


@dataclass
class MixedOptions(Options):
    camp_size: int = option(8, "characters per camp of the facts task", low=2, high=8)


def build(seed: int, source: str, options: MixedOptions) -> Stream:
    return mixed_stream(seed, source, camp_size=options.camp_size)


def mixed_stream(seed: int = 0, source: str = "offline", camp_size: int = 8) -> Stream:
    picks = PICKS.get(source) or PICKS["offline"]  # an unknown source is reported by the streams below
    parts = [("facts", facts_stream(seed, worlds=["hogwarts"], camp_size=camp_size)),
             ("sentiment", sentiment_stream(seed, source, tasks=[picks["sentiment"]])),
             ("topics", topics_stream(seed, source, tasks=[picks["topics"]])),
             ("instructions", instructions_stream(seed, source, tasks=[picks["instructions"]]))]
    tasks = []
    for stream_name, stream in parts:
        task = stream.tasks[0]
        task.name = f"{stream_name}:{task.name}"
        task.classes = []  # task-incremental here: a task is scored over its own answers only
        tasks.append(task)
    return Stream("mixed", tasks, scenario="task-incremental (one task of each format)",
                  description="facts -> sentiment -> topics -> instructions, one task each",
                  options={"source": source, "camp_size": camp_size, "picks": picks})
