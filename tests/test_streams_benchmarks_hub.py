"""--source hub for the benchmark streams, on fixture files in the hub datasets' real layouts (column names, label
encodings, unlabelled test splits): the prompts equal the folder copies', labels map by the datasets' encodings,
eval is disjoint from train, and what has no hub copy is one line."""

import datasets
import pandas as pd
import pytest

from continual.errors import ContinualError
from continual.streams import get_stream
from continual.streams.benchmarks import INSTRUCTIONS, olora_prompt
from continual.streams.benchmarks_hub import HUB_TASKS


def _rows(n, make):
    return pd.DataFrame([make(i) for i in range(n)])


# (dataset id, config) -> {split: frame}, each frame in the dataset's published columns and label encoding
def layouts(n=24):
    glue_test = {"label": -1}  # GLUE's and SuperGLUE's test splits carry no labels
    return {
        ("fancyzhx/dbpedia_14", None): {s: _rows(n, lambda i, s=s: {"label": i % 14, "title": f"{s} title {i}",
                                                                     "content": f" {s} content {i}."})
                                        for s in ("train", "test")},
        ("community-datasets/yahoo_answers_topics", None): {s: _rows(n, lambda i, s=s: {
            "id": i, "topic": i % 10, "question_title": f"{s} question {i}?", "question_content": f"details {i}",
            "best_answer": f"answer {i}"}) for s in ("train", "test")},
        ("fancyzhx/ag_news", None): {s: _rows(n, lambda i, s=s: {"text": f"{s} headline {i} (Reuters) story",
                                                                  "label": i % 4}) for s in ("train", "test")},
        ("fancyzhx/yelp_review_full", None): {s: _rows(n, lambda i, s=s: {"label": i % 5, "text": f"{s} visit {i}"})
                                              for s in ("train", "test")},
        ("stanfordnlp/imdb", None): {"train": _rows(n, lambda i: {"text": f"film {i}", "label": i % 2}),
                                     "test": _rows(n, lambda i: {"text": f"test film {i}", "label": i % 2})},
        ("nyu-mll/glue", "sst2"): {"train": _rows(n, lambda i: {"sentence": f"line {i}", "label": i % 2, "idx": i}),
                                   "validation": _rows(n, lambda i: {"sentence": f"v {i}", "label": i % 2, "idx": i}),
                                   "test": _rows(n, lambda i: {"sentence": f"t {i}", **glue_test, "idx": i})},
        ("nyu-mll/glue", "mnli"): {s: _rows(n, lambda i, s=s: {"premise": f"{s} p {i}", "hypothesis": f"h {i}",
                                                               "label": i % 3, "idx": i})
                                   for s in ("train", "validation_matched")},
        ("nyu-mll/glue", "rte"): {s: _rows(n, lambda i, s=s: {"sentence1": f"{s} a {i}", "sentence2": f"b {i}",
                                                              "label": i % 2, "idx": i}) for s in ("train", "validation")},
        ("nyu-mll/glue", "qqp"): {s: _rows(n, lambda i, s=s: {"question1": f"{s} q {i}?", "question2": f"r {i}?",
                                                              "label": i % 2, "idx": i}) for s in ("train", "validation")},
        ("aps/super_glue", "cb"): {s: _rows(n, lambda i, s=s: {"premise": f"{s} p {i}", "hypothesis": f"h {i}",
                                                               "idx": i, "label": i % 3}) for s in ("train", "validation")},
        ("aps/super_glue", "copa"): {s: _rows(n, lambda i, s=s: {
            "premise": f"{s} premise {i}.", "choice1": f"one {i}.", "choice2": f"two {i}.",
            "question": ["cause", "effect"][i % 2], "idx": i, "label": i % 2}) for s in ("train", "validation")},
        ("aps/super_glue", "boolq"): {s: _rows(n, lambda i, s=s: {"question": f"{s} is it {i}", "passage": f"text {i}",
                                                                  "idx": i, "label": i % 2})
                                      for s in ("train", "validation")},
        ("aps/super_glue", "wic"): {s: _rows(n, lambda i, s=s: {
            "word": f"w{i}", "sentence1": f"{s} one w{i}.", "sentence2": f"two w{i}.", "start1": 4, "start2": 4,
            "end1": 6, "end2": 6, "idx": i, "label": i % 2}) for s in ("train", "validation")},
        ("aps/super_glue", "multirc"): {s: _rows(n, lambda i, s=s: {
            "paragraph": f"{s} para {i}", "question": f"q {i}?", "answer": f"a {i}",
            "idx": {"paragraph": 0, "question": 0, "answer": i}, "label": i % 2}) for s in ("train", "validation")},
    }


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    files = {}
    for (dataset, config), splits in layouts().items():
        for split, frame in splits.items():
            path = tmp_path / f"{dataset.replace('/', '__')}-{config}-{split}.parquet"
            frame.to_parquet(path)
            files[dataset, config, split] = path
    asked = []
    real = datasets.load_dataset

    def load_dataset(path, name=None, split=None, **kw):
        asked.append((path, name, split))
        if (path, name, split) not in files:
            raise FileNotFoundError(f"no fixture for {path} {name} {split}")
        return real("parquet", data_files=str(files[path, name, split]), split="train")
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return asked


def test_standard_cl_from_the_hub_reads_as_the_folder_copies(fake_hub):
    stream = get_stream("standard-cl", source="hub", options={"tasks": "dbpedia,yahoo,agnews", "train_size": 6,
                                                               "test_size": 4})
    assert stream.task_names == ["dbpedia", "yahoo", "agnews"]
    dbpedia = stream.tasks[0]
    prompt, answer = dbpedia.train["prompt"][0], dbpedia.train["completion"][0]
    i = int(prompt.split("train title ")[1].split("\n")[0])  # which row was drawn
    labels = HUB_TASKS["dbpedia"].labels
    assert prompt == olora_prompt("TC", f"Title: train title {i}\nText:  train content {i}.", labels)
    assert prompt.startswith(INSTRUCTIONS["TC"] + "\nOption: Company, Educational Institution, Artist,")
    assert answer == " " + labels[i % 14] + "\n"  # dbpedia_14's label index is the copies' label order
    yahoo_prompt = stream.tasks[1].eval["test"]["prompt"][0]
    assert "\nTitle: test question" in yahoo_prompt and "?\nQuestion: details" in yahoo_prompt
    assert yahoo_prompt.endswith("\nAnswer:") and len(stream.tasks[1].eval["test"]) == 4
    assert stream.tasks[2].train["prompt"][0].split("\n")[2].startswith("Text: train headline")
    assert ("fancyzhx/dbpedia_14", None, "test") in fake_hub and stream.options["source"] == "hub"


def test_label_encodings_differ_from_the_option_order_and_are_mapped(fake_hub):
    stream = get_stream("long-sequence", source="hub", options={"tasks": "MNLI,RTE,IMDB,COPA,MultiRC",
                                                                 "train_size": 8, "test_size": 8})
    by_name = {t.name: t for t in stream.tasks}
    for prompt, completion in zip(by_name["MNLI"].train["prompt"], by_name["MNLI"].train["completion"]):
        i = int(prompt.split("train p ")[1].split("\n")[0])
        assert completion == " " + {0: "entailment", 1: "neutral", 2: "contradiction"}[i % 3] + "\n"
        assert prompt.startswith(INSTRUCTIONS["NLI"] + "\nOption: neutral, entailment, contradiction \n")
    for prompt, completion in zip(by_name["RTE"].train["prompt"], by_name["RTE"].train["completion"]):
        i = int(prompt.split("train a ")[1].split("\n")[0])
        assert completion == (" entailment\n" if i % 2 == 0 else " contradiction\n")  # GLUE's 1: not_entailment
    imdb = by_name["IMDB"]
    assert imdb.answers == [" Good", " Bad"]
    for prompt, completion in zip(imdb.train["prompt"], imdb.train["completion"]):
        assert completion == (" Good\n" if int(prompt.split("film ")[1].split("\n")[0]) % 2 else " Bad\n")
    copa = by_name["COPA"].eval["test"]["prompt"][0]  # COPA has no instruction: its example is the question
    assert copa.startswith("Which sentence is the ") and " Choose one between A and B.\nA: one " in copa
    assert copa.endswith("\nAnswer:") and "Option:" not in copa
    multirc = by_name["MultiRC"].eval["test"]["prompt"][0]
    assert "\nparagraph: validation para " in multirc and "\ncandidate answer: a " in multirc


def test_eval_is_drawn_from_train_after_the_rows_trained_on(fake_hub):
    stream = get_stream("long-sequence", source="hub", options={"tasks": "SST-2", "train_size": 10,
                                                                 "test_size": 10, "eval_split": "eval"})
    sst = stream.tasks[0]
    assert not set(sst.train["prompt"]) & set(sst.eval["test"]["prompt"])
    assert all("Text: line " in p for p in sst.eval["test"]["prompt"])  # from the train split
    scored = get_stream("long-sequence", source="hub", options={"tasks": "SST-2", "test_size": 30}).tasks[0]
    assert len(scored.eval["test"]) == 24 and all("Text: v " in p for p in scored.eval["test"]["prompt"])
    assert ("nyu-mll/glue", "sst2", "validation") in fake_hub  # GLUE's test split has no labels
    again = get_stream("long-sequence", source="hub", options={"tasks": "SST-2", "train_size": 10})
    assert again.tasks[0].train["prompt"] == sst.train["prompt"]  # seeded


def test_what_has_no_hub_copy_is_one_line(fake_hub):
    with pytest.raises(ContinualError, match="amazon.*no maintained copy on the hub.*--data-dir"):
        get_stream("standard-cl", source="hub")
    with pytest.raises(ContinualError, match="trace is read from a local folder only"):
        get_stream("trace", source="hub")
    with pytest.raises(ContinualError, match="--source hub reads the hub datasets, not a folder"):
        get_stream("standard-cl", source="hub", options={"data_dir": "/somewhere", "tasks": "agnews"})


def test_an_unreachable_hub_is_one_line(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(ContinualError, match="could not load hub dataset 'fancyzhx/ag_news'"):
        get_stream("standard-cl", source="hub", options={"tasks": "agnews"})
