"""Custom stream data as users have it: integer, string and boolean labels; id -> name mappings (given, or a
ClassLabel's); text from several columns; headerless csv files (AG News' layout); and the errors that list what
is there instead."""

import csv
import json

import pandas as pd
import pytest
import yaml
from datasets import ClassLabel, Dataset, Features, Value

from continual.cli import main
from continual.streams import get_stream

WORDS = {1: ["rocket", "orbit", "planet"], 2: ["bread", "soup", "apple"], 3: ["guitar", "drum", "song"],
         4: ["goal", "race", "match"]}
NAMES = {1: "space", 2: "food", 3: "music", 4: "sport"}
RUN = ["--strategy", "naive", "--model", "tiny", "--steps", "1", "--batch-size", "2", "--eval-cap", "4",
       "--probe", "perplexity", "--probe-option", "perplexity.tokens=16", "--no-progress", "--no-plots"]


def rows(per_label=6, labels=(1, 2, 3, 4)):
    return [{"label": lab, "title": f"{WORDS[lab][i % 3]} news {i}",
             "description": f"all about the {WORDS[lab][(i + 1) % 3]} today {i}"} for lab in labels
            for i in range(per_label)]


def write_stream(folder, file="stream.yaml", **spec):
    base = {"scenario": "class-incremental", "train_size": 4, "test_size": 2}
    path = folder / file
    path.write_text(yaml.safe_dump({**base, **spec}, sort_keys=False))
    return path


def task_answers(stream):
    return [(t.name, t.classes) for t in stream.tasks]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_integer_labels_split_into_tasks_however_yaml_spells_them(tmp_path, fmt):
    data = pd.DataFrame(rows())
    if fmt == "csv":
        data.to_csv(tmp_path / "news.csv", index=False)
    else:
        data.to_json(tmp_path / "news.jsonl", orient="records", lines=True)
    path = write_stream(tmp_path, source=f"news.{fmt}", columns={"text": "title"}, template="{text}\nTopic:",
                        verbalizer={1: " space", "2": " food", 3: " music", 4: " sport"},
                        tasks=[{"name": "a", "labels": [1, 2]}, {"name": "b", "labels": ["3", 4]}])
    stream = get_stream(str(path))
    assert task_answers(stream) == [("a", [" space", " food"]), ("b", [" music", " sport"])]
    first = stream.tasks[0]
    assert len(first.train) == 4 and sorted(first.eval["test"]["label"]) == [0, 1]
    words = {w for lab in (1, 2) for w in WORDS[lab]}
    assert all(p.split(" ")[0] in words for p in first.train["prompt"])  # only rows of labels 1 and 2


def test_string_labels_split_into_tasks(tmp_path):
    pd.DataFrame([{**r, "label": NAMES[r["label"]]} for r in rows()]).to_csv(tmp_path / "news.csv", index=False)
    path = write_stream(tmp_path, source="news.csv", columns={"text": "title"},
                        verbalizer={n: f" {n}" for n in NAMES.values()},
                        tasks=[{"name": "a", "labels": ["space", "food"]}, {"name": "b", "labels": ["music", "sport"]}])
    assert task_answers(get_stream(str(path))) == [("a", [" space", " food"]), ("b", [" music", " sport"])]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_boolean_labels_split_into_tasks(tmp_path, fmt):
    data = pd.DataFrame([{"text": f"{w} number {i}", "label": lab} for lab, w in ((True, "yes"), (False, "no"))
                         for i in range(6)])
    if fmt == "csv":  # True/False in the file: datasets reads a bool column
        data.to_csv(tmp_path / "flags.csv", index=False)
    else:
        data.to_json(tmp_path / "flags.jsonl", orient="records", lines=True)
    path = write_stream(tmp_path, source=f"flags.{fmt}", scenario="task-incremental",
                        verbalizer={True: " true", "false": " false"},
                        tasks=[{"name": "t", "labels": ["True"]}, {"name": "f", "labels": [False]}])
    stream = get_stream(str(path))
    assert [t.answers for t in stream.tasks] == [[" true"], [" false"]]
    assert all(p.startswith("Text: yes") for p in stream.tasks[0].train["prompt"])


def test_label_names_map_ids_and_answer_with_the_names(tmp_path):
    pd.DataFrame(rows()).to_csv(tmp_path / "news.csv", index=False)
    path = write_stream(tmp_path, source="news.csv", columns={"text": "title"}, label_names=NAMES,
                        tasks=[{"name": "a", "labels": ["space", 2]}, {"name": "b", "labels": [3, "sport"]}])
    assert task_answers(get_stream(str(path))) == [("a", [" space", " food"]), ("b", [" music", " sport"])]


def test_a_class_label_column_gives_its_names(tmp_path):
    features = Features({"text": Value("string"), "label": ClassLabel(names=["space", "food", "music", "sport"])})
    Dataset.from_list([{"text": r["title"], "label": r["label"] - 1} for r in rows()],
                      features=features).to_parquet(str(tmp_path / "news.parquet"))
    path = write_stream(tmp_path, source="news.parquet",
                        tasks=[{"name": "a", "labels": [0, "food"]}, {"name": "b", "labels": ["music", 3]}])
    assert task_answers(get_stream(str(path))) == [("a", [" space", " food"]), ("b", [" music", " sport"])]


def test_columns_join_and_named_placeholders(tmp_path):
    pd.DataFrame(rows()).to_csv(tmp_path / "news.csv", index=False)
    joined = write_stream(tmp_path, source="news.csv", columns={"text": ["title", "description"]}, separator=". ",
                          label_names=NAMES, template="{text}\nTopic:", tasks=[{"name": "a", "labels": [1, 2]}])
    prompts = get_stream(str(joined)).tasks[0].train["prompt"]
    assert all(p.endswith("\nTopic:") and ". all about the " in p for p in prompts)
    named = write_stream(tmp_path, source="news.csv", label_names=NAMES,
                         template="Title: {title}\nText: {description}\nTopic:",
                         tasks=[{"name": "a", "labels": [1, 2]}])
    prompt = get_stream(str(named)).tasks[0].train["prompt"][0]
    title, text, cue = prompt.split("\n")
    assert title.startswith("Title: ") and " news " in title and text.startswith("Text: all about the ")
    assert cue == "Topic:"


def test_generation_tasks_fill_named_placeholders_and_join_columns(tmp_path):
    qa = [{"question": f"what is {i} plus one", "context": f"counting {i}", "answer": str(i + 1), "unit": "apples"}
          for i in range(8)]
    qa.append({"question": "unanswered", "context": "none", "answer": None, "unit": None})  # skipped: no response
    pd.DataFrame(qa).to_json(tmp_path / "qa.jsonl", orient="records", lines=True)
    path = write_stream(tmp_path, scenario="task-incremental", source="qa.jsonl", kind="generation",
                        columns={"response": ["answer", "unit"]}, train_size=0, test_size=2,
                        template="Q: {question}\nContext: {context}\nA:", tasks=[{"name": "sums"}])
    task = get_stream(str(path)).tasks[0]
    assert len(task.train) == 6 and task.eval["test"]["reference"][0].endswith(" apples")
    assert all(p.startswith("Q: what is ") and "\nContext: counting " in p and p.endswith("\nA:")
               for p in task.train["prompt"])


def write_ag_news(path, per_label=6):
    """AG News' own layout: no header, every field quoted, class ids 1-4, title, description."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        for r in rows(per_label):
            writer.writerow([r["label"], r["title"], r["description"]])


def test_headerless_csv_runs_end_to_end_and_predictions_name_the_labels(tmp_path, capsys):
    write_ag_news(tmp_path / "train.csv")
    path = write_stream(tmp_path, source="train.csv", header=False, names=["label", "title", "description"],
                        label_names={1: "World", 2: "Sports", 3: "Business", 4: "Sci/Tech"},
                        template="Title: {title}\nText: {description}\nTopic:",
                        tasks=[{"name": "world-sports", "labels": [1, 2]},
                               {"name": "business-tech", "labels": ["Business", "Sci/Tech"]}])
    out = tmp_path / "run"
    assert main(["run", "--stream", str(path), "--out", str(out), *RUN]) == 0, capsys.readouterr().err
    predictions = pd.read_csv(out / "predictions.csv")
    assert set(predictions["label"]) <= {"World", "Sports", "Business", "Sci/Tech"}
    assert set(predictions["predicted"]) <= {"World", "Sports", "Business", "Sci/Tech"}
    assert set(predictions["task"]) == {"world-sports", "business-tech"}
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


def bad_cases(folder):
    """(stream file, text the one-line error must contain) for each mistake users make with their data."""
    write_ag_news(folder / "ag.csv")
    pd.DataFrame(rows()).to_csv(folder / "news.csv", index=False)
    (folder / "header.csv").write_text("label,title,description\n")
    (folder / "blank.csv").write_text("")
    tasks = [{"name": "a", "labels": [1, 2]}]
    pd.DataFrame([{"text": f"{w} {i}", "label": w} for w in ("yes", "no") for i in range(4)]).to_csv(
        folder / "answers.csv", index=False)
    yes_no = folder / "yes_no.yaml"  # unquoted yes/no: YAML 1.1 booleans, while the file holds the words
    yes_no.write_text("source: answers.csv\nverbalizer: {yes: ' yes', no: ' no'}\ntrain_size: 2\ntest_size: 2\n"
                      "tasks:\n  - {name: a, labels: [yes, no]}\n")
    title = {"source": "news.csv", "columns": {"text": "title"}}
    return {
        "headerless read with a header": (
            write_stream(folder, "headerless.yaml", source="ag.csv", columns={"text": "title"}, label_names=NAMES,
                         tasks=tasks),
            "its first row looks like data, not column names: for a file without a header row set header: false"),
        "header-only csv": (
            write_stream(folder, "header_only.yaml", source="header.csv", label_names=NAMES, tasks=tasks),
            "header.csv' has no rows (only a header)"),
        "empty csv": (write_stream(folder, "empty.yaml", source="blank.csv", label_names=NAMES, tasks=tasks),
                      "blank.csv' has no rows"),
        "label absent from the verbalizer": (
            write_stream(folder, "absent.yaml", **title, verbalizer={1: " a", 2: " b"},
                         tasks=[{"name": "a", "labels": [1, 5]}]),
            "label(s) '5' are absent from the verbalizer, whose keys are '1', '2'"),
        "labels no row has": (
            write_stream(folder, "norows.yaml", **title, verbalizer={1: " a", 7: " b"},
                         tasks=[{"name": "a", "labels": [7]}]),
            "has no rows with label(s) '7'; its labels are '1', '2', '3', '4'"),
        "template names a missing column": (
            write_stream(folder, "template.yaml", source="news.csv", label_names=NAMES, template="{headline}\nTopic:",
                         tasks=tasks),
            "lacks column(s) headline; it has: label, title, description"),
        "header false without names": (
            write_stream(folder, "nonames.yaml", source="ag.csv", header=False, tasks=tasks),
            "header: false needs names: [...]"),
        "yaml booleans for word labels": (yes_no, "quote labels that are words"),
        "template without a placeholder": (
            write_stream(folder, "bare.yaml", source="news.csv", label_names=NAMES, template="Topic:", tasks=tasks),
            "lacks the placeholder {text} (or a column of the file in braces: {label}, {title}, {description})"),
        "template shows the label": (
            write_stream(folder, "leak.yaml", source="news.csv", label_names=NAMES, template="{title} {label}:",
                         tasks=tasks),
            "shows the label column {label}"),
    }


CASES = ["headerless read with a header", "header-only csv", "empty csv", "label absent from the verbalizer",
         "labels no row has", "template names a missing column", "header false without names",
         "yaml booleans for word labels", "template without a placeholder", "template shows the label"]


@pytest.mark.parametrize("case", CASES)
def test_bad_data_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    path, message = bad_cases(tmp_path)[case]
    out = tmp_path / "out"
    assert main(["run", "--stream", str(path), "--out", str(out), *RUN]) == 2, case
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("continual: error: ") and message in err, (case, err)
    assert not out.exists()
