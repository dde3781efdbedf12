"""Data sources: hub loaders on local fixtures written in the hub datasets' real layouts, local files, offline
package data and their errors. No test touches the network."""

import io
import json
import tarfile
from collections import Counter

import datasets
import pandas as pd
import pytest

from continual.errors import ContinualError
from continual.streams import instructions, sentiment, sources, topics

# Fixture rows in each hub dataset's published column layout (names, order, label encoding).
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"]


def _texts(prefix, n):
    return [f"{prefix} {WORDS[i % 12]} {WORDS[(i // 12) % 12]} number {i}" for i in range(n)]


def hub_fixtures(folder, n=60):
    """{dataset id: (file, split)} for every hub dataset the streams use, written like the real ones."""
    half = n // 2
    frames = {
        # stanfordnlp/imdb: text, label (0 neg, 1 pos; -1 in the unsupervised split)
        "stanfordnlp/imdb": pd.DataFrame({"text": _texts("imdb review", n + 4),
                                          "label": [0, 1] * half + [-1] * 4}),
        # cornell-movie-review-data/rotten_tomatoes: text, label (0 neg, 1 pos)
        "cornell-movie-review-data/rotten_tomatoes": pd.DataFrame({"text": _texts("rt snippet", n),
                                                                   "label": [1, 0] * half}),
        # fancyzhx/amazon_polarity: label first, then title and content
        "fancyzhx/amazon_polarity": pd.DataFrame({"label": [0, 1] * half, "title": _texts("title", n),
                                                  "content": _texts("content", n)}),
        # fancyzhx/yelp_polarity: text, label (0 = "1" negative, 1 = "2" positive)
        "fancyzhx/yelp_polarity": pd.DataFrame({"text": _texts("yelp review", n), "label": [0, 1] * half}),
        # fancyzhx/ag_news: text, label 0..3 = World, Sports, Business, Sci/Tech
        "fancyzhx/ag_news": pd.DataFrame({"text": _texts("news story", 2 * n), "label": [0, 1, 2, 3] * half}),
        # databricks/databricks-dolly-15k: instruction, context, response, category
        "databricks/databricks-dolly-15k": pd.DataFrame({
            "instruction": _texts("instruction", 3 * n), "context": ["", "some context"] * (3 * n // 2),
            "response": _texts("response", 3 * n),
            "category": ["open_qa", "classification", "creative_writing"] * n}),
        # tatsu-lab/alpaca: instruction, input, output, text (the pre-formatted prompt)
        "tatsu-lab/alpaca": pd.DataFrame({"instruction": _texts("do this", n), "input": ["", "an input"] * half,
                                          "output": _texts("output", n), "text": ["### Instruction: ..."] * n}),
    }
    files = {}
    for dataset_id, frame in frames.items():
        path = folder / (dataset_id.replace("/", "__") + ".parquet")
        frame.to_parquet(path)
        files[dataset_id] = path
    return files


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """datasets.load_dataset answers the hub ids from the fixture files (any split); records what was asked."""
    files = hub_fixtures(tmp_path)
    asked = []
    real = datasets.load_dataset

    def load_dataset(path, name=None, split=None, **kw):
        if path in files:
            asked.append((path, split))
            return real("parquet", data_files=str(files[path]), split="train")
        return real(path, name, split=split, **kw)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return asked


@pytest.mark.parametrize("task,first_label", [("movies", "negative"), ("critics", "positive"),
                                              ("products", "negative"), ("restaurants", "negative")])
def test_hub_sentiment_loaders_map_the_real_layouts(fake_hub, task, first_label):
    dataset_id, split, mapping = sources.HUB_SENTIMENT[task]
    data = sources.hub_labelled(dataset_id, mapping, split)
    assert data.column_names == ["text", "label"]
    assert Counter(data["label"]) == {"negative": 30, "positive": 30}  # imdb's -1 rows are dropped
    assert data[0]["label"] == first_label
    if task == "products":  # title and content become one text
        assert data[0]["text"] == "title alpha alpha number 0. content alpha alpha number 0"
    assert fake_hub == [(dataset_id, split)]


def test_hub_topics_and_instruction_loaders_map_the_real_layouts(fake_hub):
    dataset_id, split, mapping = sources.HUB_TOPICS
    data = sources.hub_labelled(dataset_id, mapping, split)
    assert Counter(data["label"]) == {"World": 30, "Sports": 30, "Business": 30, "Sci/Tech": 30}
    assert data[1]["label"] == "Sports" and data[1]["text"] == "news story bravo alpha number 1"
    dolly = sources.dolly_pairs(sources.load_hub(*sources.HUB_DOLLY))
    assert dolly[0] == {"prompt": "instruction alpha alpha number 0", "response": "response alpha alpha number 0",
                        "category": "open_qa"}
    assert dolly[1]["prompt"] == "instruction bravo alpha number 1\nContext: some context"
    alpaca = sources.alpaca_pairs(sources.load_hub(*sources.HUB_ALPACA))
    assert alpaca[1] == {"prompt": "do this bravo alpha number 1\nInput: an input",
                         "response": "output bravo alpha number 1", "category": "alpaca"}


def test_hub_streams_build_from_the_fixtures(fake_hub):
    s = sentiment.sentiment_stream(source="hub", train_size=20, test_size=10)
    assert s.task_names == ["movies", "products", "restaurants", "critics"]
    assert all(Counter(t.eval["test"]["label"]) == {0: 5, 1: 5} for t in s.tasks)
    t = topics.topics_stream(source="hub", train_size=20, test_size=10)
    assert [task.classes for task in t.tasks] == [[" world", " sports"], [" business", " science"]]
    assert all("Article: news story" in p for p in t.tasks[1].train["prompt"])
    i = instructions.instructions_stream(source="hub", train_size=10, test_size=5)
    assert i.task_names == ["open_qa", "classification", "creative_writing", "alpaca"]
    assert [len(task.train) for task in i.tasks] == [10, 10, 10, 10]
    assert i.tasks[0].eval["test"][0]["reference"].startswith("response")


def test_hub_without_network_is_one_clear_error(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(ContinualError, match=r"'stanfordnlp/imdb'.*--source offline"):
        sentiment.sentiment_stream(source="hub")


def test_hub_dataset_with_missing_columns_names_them(monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_dict({"review": ["x"]}))
    with pytest.raises(ContinualError, match="lacks column.*text, label.*has: review"):
        sources.hub_labelled("stanfordnlp/imdb", sources.HUB_SENTIMENT["movies"][2], "train")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_local_files_of_every_format(tmp_path, suffix):
    frame = pd.DataFrame({"sentence": ["a b", "c d"], "tag": ["x", "y"]})
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    else:
        frame.to_parquet(path)
    data = sources.load_local(path)
    assert data["sentence"][:] == ["a b", "c d"] and data["tag"][:] == ["x", "y"]


def test_local_file_errors(tmp_path):
    with pytest.raises(ContinualError, match="does not exist"):
        sources.load_local(tmp_path / "none.csv")
    with pytest.raises(ContinualError, match=r"must end in \.csv"):
        sources.load_local(tmp_path / "data.txt")
    (tmp_path / "empty.csv").write_text("text,label\n")
    with pytest.raises(ContinualError, match="empty.csv"):
        sources.load_local(tmp_path / "empty.csv")


def test_vader_threshold_keeps_only_clear_valence(tmp_path, monkeypatch):
    """A stand-in archive with the sdist's nesting: >= +1 positive, <= -1 negative, the rest dropped."""
    lines = "1\t2.5\tgreat\r\n2\t0.9\tfine\r\n3\t-0.9\tmeh\r\n4\t-1.0\tbad\r\n5\t1.0\tgood\r\n"
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        data = lines.encode("utf-8-sig")
        info = tarfile.TarInfo("hutto_ICWSM_2014/tweets_GroundTruth.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with tarfile.open(tmp_path / sources.VADER_ARCHIVE, "w:gz") as tar:
        info = tarfile.TarInfo("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    monkeypatch.setenv("CONTINUAL_DATA_DIR", str(tmp_path))
    sources._vader_files.cache_clear()
    try:
        data = sources.vader_sentiment("tweets")
        assert list(zip(data["text"], data["label"])) == [("great", "positive"), ("bad", "negative"),
                                                          ("good", "positive")]
    finally:
        sources._vader_files.cache_clear()


def test_missing_vader_archive_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTINUAL_DATA_DIR", str(tmp_path))
    sources._vader_files.cache_clear()
    try:
        with pytest.raises(ContinualError, match=r"missing; run `make install`, or: pip download --no-deps "
                                                 r"--no-binary :all: vaderSentiment==3\.3\.2"):
            sentiment.sentiment_stream()
    finally:
        sources._vader_files.cache_clear()


def test_real_vader_archive_counts():
    """The installed archive (make install) holds the four domains of Hutto & Gilbert 2014."""
    counts = {d: len(sources.vader_valence(d)) for d in sources.VADER_DOMAINS}
    assert counts == {"movies": 10605, "products": 3708, "editorials": 5190, "tweets": 4200}
