"""The benchmark streams on fixtures these tests write, in both layouts: parsing, the papers' orders, the same prompt
from either layout, scoring, and one clear line for every broken folder."""

import json

import pandas as pd
import pytest

import continual
from continual.errors import ContinualError
from continual.runner import stream_for
from continual.config import RunConfig
from continual.streams import get_stream
from continual.streams.benchmarks import INSTRUCTIONS, olora_prompt

TASKS = {  # name: (O-LoRA category, labels, [(text, label)] train, test)
    "dbpedia": ("TC", ["Company", "Artist", "Album"], [("Title: Acme\nText: Acme makes anvils.", "Company"),
                                                      ("Title: Bo\nText: Bo sings.", "Artist")],
                [("Title: Lp\nText: A record.", "Album"), ("Title: Corp\nText: A firm.", "Company")]),
    "amazon": ("SC", ["negative", "positive"], [("Title: Bad\nText: It broke.", "negative"),
                                               ("Title: Good\nText: Works well.", "positive")],
               [("Title: Meh\nText: Broke on day one.", "negative"), ("Title: Yes\nText: Love it.", "positive")]),
    "yahoo": ("TC", ["Health", "Sports"], [("Question: Is tea good for you?", "Health"),
                                           ("Question: Who won the cup?", "Sports")],
              [("Question: How to sleep better?", "Health"), ("Question: Best goalkeeper?", "Sports")]),
    "agnews": ("TC", ["World", "Sports", "Business", "Science or Technology"],
               [("Title: Vote\nText: Elections held.", "World"), ("Title: Goal\nText: A late win.", "Sports")],
               [("Title: Shares\nText: Stocks rose.", "Business"), ("Title: Chip\nText: A new CPU.",
                                                                     "Science or Technology")]),
}


def write_trace_layout(root, tasks=TASKS):
    for name, (category, labels, train, test) in tasks.items():
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "labels.json").write_text(json.dumps(labels))
        for split, rows in (("train", train), ("eval", test), ("test", test)):
            (folder / f"{split}.json").write_text(json.dumps(
                [{"prompt": olora_prompt(category, text, labels), "answer": label} for text, label in rows]))
    return root


def write_olora_layout(root, tasks=TASKS):
    for name, (category, labels, train, test) in tasks.items():
        folder = root / category / name
        folder.mkdir(parents=True)
        (folder / "labels.json").write_text(json.dumps(labels))
        for split, rows in (("train", train), ("dev", test), ("test", test)):
            (folder / f"{split}.json").write_text(json.dumps([{"sentence": t, "label": y} for t, y in rows]))
    return root


def test_both_layouts_give_the_same_tasks_prompts_and_labels(tmp_path):
    trace = get_stream("standard-cl", options={"data_dir": str(write_trace_layout(tmp_path / "trace"))})
    olora = get_stream("standard-cl", options={"data_dir": str(write_olora_layout(tmp_path / "olora"))})
    assert trace.task_names == olora.task_names == ["dbpedia", "amazon", "yahoo", "agnews"]
    for a, b in zip(trace.tasks, olora.tasks):
        assert a.train.to_dict() == b.train.to_dict() and a.eval["test"].to_dict() == b.eval["test"].to_dict()
    agnews = trace.tasks[3]
    assert agnews.eval["test"][0]["prompt"] == (
        f"{INSTRUCTIONS['TC']}\nOption: World, Sports, Business, Science or Technology \n"
        "Title: Shares\nText: Stocks rose.\nAnswer:")  # the layout of the shared TRACE-format copy
    assert agnews.answers == [" World", " Sports", " Business", " Science or Technology"]
    # trained to end its answer: the greedy answer can then be the label alone
    assert agnews.train["completion"] == [" World\n", " Sports\n"] and agnews.answer_metric == "exact_match"
    assert agnews.scored_by == "exact_match"  # the papers' metric fills the matrix by default


@pytest.mark.parametrize("order,expected", [("1", ["dbpedia", "amazon", "yahoo", "agnews"]),
                                            ("2", ["dbpedia", "amazon", "agnews", "yahoo"]),
                                            ("3", ["yahoo", "amazon", "agnews", "dbpedia"])])
def test_the_papers_orders(tmp_path, order, expected):
    root = write_trace_layout(tmp_path / "d")
    stream = stream_for(RunConfig(stream="standard-cl", order=order, stream_options={"standard-cl.data_dir":
                                                                                     str(root)}))
    assert stream.task_names == expected


def test_train_and_test_sizes_sample_by_the_seed(tmp_path):
    root = write_trace_layout(tmp_path / "d")
    one = get_stream("standard-cl", seed=0, options={"data_dir": str(root), "train_size": 1, "test_size": 1})
    again = get_stream("standard-cl", seed=0, options={"data_dir": str(root), "train_size": 1, "test_size": 1})
    assert all(len(t.train) == 1 and len(t.eval["test"]) == 1 for t in one.tasks)
    assert [t.train.to_dict() for t in one.tasks] == [t.train.to_dict() for t in again.tasks]


def broken(tmp_path, what):
    root = write_trace_layout(tmp_path / "d")
    if what == "labels":
        (root / "amazon" / "labels.json").write_text(json.dumps(["positive", "neutral"]))
    elif what == "task":
        import shutil
        shutil.rmtree(root / "yahoo")
    elif what == "empty":
        (root / "agnews" / "test.json").write_text("[]")
    elif what == "json":
        (root / "dbpedia" / "train.json").write_text("[{")
    elif what == "keys":
        (root / "dbpedia" / "train.json").write_text(json.dumps([{"text": "x", "label": "Company"}]))
    return root


@pytest.mark.parametrize("what,message", [
    ("labels", "train answers 'negative' are not among the labels"),
    ("task", "task 'yahoo' is not in"),
    ("empty", "holds no examples"),
    ("json", "is not readable JSON"),
    ("keys", "lacks the string fields prompt and answer"),
])
def test_a_broken_folder_is_one_clear_line(tmp_path, what, message):
    root = broken(tmp_path, what)
    with pytest.raises(ContinualError, match=message):
        get_stream("standard-cl", options={"data_dir": str(root)})


def test_no_folder_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv("CONTINUAL_BENCHMARK_DIR", raising=False)
    with pytest.raises(ContinualError, match="pass --data-dir DIR"):
        get_stream("standard-cl")
    with pytest.raises(ContinualError, match="does not exist"):
        get_stream("standard-cl", options={"data_dir": str(tmp_path / "nowhere")})
    monkeypatch.setenv("CONTINUAL_BENCHMARK_DIR", str(write_trace_layout(tmp_path / "env")))
    assert get_stream("standard-cl").task_names[0] == "dbpedia"


def write_trace_tasks(root):
    rows = {"C-STANCE": ("判断态度，选择一项：A.支持，B.反对，C.中立。\n文本：好\nAnswer:", "A"),
            "FOMC": ("What is the monetary policy stance? A. dovish, B. hawkish, C. neutral.\nText: Rates up.", "B"),
            "MeetingBank": ("Write a summary of the following meeting transcripts.\nMeeting transcripts:\nWe met.",
                            "A meeting."),
            "Py150": ("<s> import os <EOL> os .", "path"),
            "ScienceQA": ("Question:\nWhich is a mammal?\nChoices:\nA. cat\nB. fish\nAnswer:", "A\nCats feed milk."),
            "NumGLUE-cm": ("Solve: 3 frogs have how many eyes?\nAnswer:", "6"),
            "NumGLUE-ds": ("Solve: 2 + 2?\nAnswer:", "4"),
            "20Minuten": ("Provide a simplified version.\n\nParagraph:\nDer Hund rennt sehr schnell.", "Der Hund rennt.")}
    for name, (prompt, answer) in rows.items():
        folder = root / name
        folder.mkdir(parents=True)
        for split in ("train", "eval", "test"):
            (folder / f"{split}.json").write_text(json.dumps([{"prompt": prompt, "answer": answer}] * 2))
    return root


def test_trace_tasks_are_scored_as_trace_scores_them(tmp_path):
    stream = get_stream("trace", options={"data_dir": str(write_trace_tasks(tmp_path / "trace"))})
    scored = {t.name: (t.kind, t.scored_by) for t in stream.tasks}
    assert scored == {"C-STANCE": ("choice", "exact_match"), "FOMC": ("choice", "exact_match"),
                      "MeetingBank": ("generation", "rougeL_f1"), "Py150": ("generation", "edit_similarity"),
                      "ScienceQA": ("generation", "letter"), "NumGLUE-cm": ("generation", "number"),
                      "NumGLUE-ds": ("generation", "number"), "20Minuten": ("generation", "sari")}
    minuten = stream.tasks[-1].eval["test"]
    assert minuten[0]["source"] == "Der Hund rennt sehr schnell."  # what SARI compares the answer with


def test_a_tiny_run_writes_both_metrics_and_the_papers_summary(tmp_path):
    root = write_trace_layout(tmp_path / "d")
    result = continual.run(stream="standard-cl", order="1", data_dir=str(root), model="tiny", steps=2, batch_size=2,
                           probe="cloze", progress=False, plots=False, max_length=96, out=str(tmp_path / "run"))
    s = result.summary
    assert s["op"] == s["acc"] == s["aa"] and s["bwt_trace"] == s["bwt"]
    assert "same number as acc" in s["conventions"]["op"] and set(s["matrix_metric"].values()) == {"exact_match"}
    for name in ("matrix_logprob.csv", "matrix_answer.csv"):
        frame = pd.read_csv(result.path / name, index_col="after")
        assert list(frame.index) == ["base", "dbpedia", "amazon", "yahoo", "agnews"]
    answer = pd.read_csv(result.path / "matrix_answer.csv", index_col="after")
    pd.testing.assert_frame_equal(answer, result.matrix, check_exact=False)
    assert result.config["stream_options"]["standard-cl.data_dir"] == str(root)


def test_a_long_benchmark_prompt_keeps_its_instruction_and_answer_cue_when_trimmed(tmp_path, tiny):
    from continual.streams.build import fit_to_length
    long_text = "Title: Long\nText: " + " ".join(f"word{i}" for i in range(200))
    tasks = {"agnews": ("TC", ["World", "Sports"], [(long_text, "World"), ("Title: S\nText: Goal.", "Sports")],
                        [("Title: T\nText: Vote.", "World")]),
             **{k: v for k, v in TASKS.items() if k != "agnews"}}
    stream = get_stream("standard-cl", options={"data_dir": str(write_trace_layout(tmp_path / "d", tasks))})
    fit_to_length(stream, tiny.tokenizer, 160)  # the head (instruction + options) is 61 tiny tokens
    trimmed = stream.tasks[3].train["prompt"][0]
    assert trimmed.startswith(INSTRUCTIONS["TC"] + "\nOption: World, Sports \n") and trimmed.endswith("\nAnswer:")
    assert "word0 " not in trimmed and "word199" in trimmed
    assert len(tiny.tokenizer(trimmed + " World")["input_ids"]) <= 160


def test_the_top_level_flags_are_the_options_they_stand_for(tmp_path):
    from continual.runner import resolve
    root = str(write_trace_layout(tmp_path / "d"))
    short, _, _ = resolve(RunConfig(stream="standard-cl", data_dir=root, metric="logprob", test_size=1))
    spelled, _, _ = resolve(RunConfig(stream="standard-cl", stream_options={"standard-cl.data_dir": root,
                                                                            "standard-cl.metric": "logprob",
                                                                            "standard-cl.test_size": 1}))
    assert short == spelled and short.config_hash() == spelled.config_hash()  # one run, however it was spelled
    assert stream_for(short).tasks[0].scored_by == "accuracy"  # logprob fills the matrix
    assert len(stream_for(short).tasks[0].eval["test"]) == 1
    sentiment, _, _ = resolve(RunConfig(stream="sentiment", train_size=20))  # any stream with the option
    assert sentiment.stream_options["sentiment.train_size"] == 20
    for config, message in ((RunConfig(stream="facts", data_dir=root), "--data-dir does not apply to stream 'facts'"),
                            (RunConfig(probe_limit=5), "--probe-limit sets the lm-eval probe, which this run does "
                                                       "not use")):
        with pytest.raises(ContinualError, match=message):
            resolve(config)
