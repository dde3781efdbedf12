"""The stream registry: a name maps to a function (seed, **options) -> Stream."""

from __future__ import annotations

from continual.errors import ContinualError
from continual.streams.facts import facts_stream
from continual.streams.task import Stream, Task

STREAMS = {
    "facts": (facts_stream, "friend/enemy relations between characters of three fictional worlds, one world a task"),
}


def get_stream(name: str, seed: int = 0, **options) -> Stream:
    if name not in STREAMS:
        raise ContinualError(f"unknown stream '{name}'; choose one of: {', '.join(STREAMS)} (see `continual list`)")
    return STREAMS[name][0](seed=seed, **options)


__all__ = ["STREAMS", "Stream", "Task", "get_stream"]
