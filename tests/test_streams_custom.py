"""Custom streams from YAML: a local text,label CSV as a class-incremental topics stream, end to end, and every
kind of bad input as one error line with exit status 2 and nothing written."""

import json

import pandas as pd
import pytest
import yaml

from continual.cli import main
from continual.config import RunConfig
from continual.streams import get_stream

TOPICS = {"space": ["rocket", "orbit", "planet", "comet"], "food": ["bread", "soup", "apple", "cheese"],
          "music": ["guitar", "drum", "song", "choir"], "sport": ["goal", "race", "match", "coach"]}
RUN = ["--strategy", "naive", "--model", "tiny", "--steps", "2", "--batch-size", "4", "--eval-cap", "6",
       "--probe-option", "perplexity.tokens=64", "--probe-option", "kl.tokens=16", "--no-progress"]


def write_csv(folder, per_label=10):
    rows = [{"text": f"a note about the {w} and the {TOPICS[lab][(i + 1) % 4]} number {i}", "label": lab}
            for lab in TOPICS for i in range(per_label) for w in [TOPICS[lab][i % 4]]]
    pd.DataFrame(rows).to_csv(folder / "notes.csv", index=False)


def write_stream(folder, file="notes.yaml", **changes):
    spec = {"name": "notes", "scenario": "class-incremental", "source": "notes.csv",
            "template": "Note: {text}\nTopic:", "train_size": 8, "test_size": 4,
            "verbalizer": {lab: f" {lab}" for lab in TOPICS},
            "tasks": [{"name": "space-food", "labels": ["space", "food"]},
                      {"name": "music-sport", "labels": ["music", "sport"]}]}
    spec.update(changes)
    path = folder / file
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_local_csv_runs_as_a_class_incremental_stream_from_yaml(tmp_path, capsys):
    write_csv(tmp_path)
    stream_file = write_stream(tmp_path)
    out = tmp_path / "run"
    assert main(["run", "--stream", str(stream_file), "--out", str(out), *RUN]) == 0
    matrix = pd.read_csv(out / "matrix.csv", index_col="after")
    assert list(matrix.columns) == ["space-food", "music-sport"]
    assert list(matrix.index) == ["base", "space-food", "music-sport"]
    scores = pd.read_csv(out / "scores.csv")
    labels = {(r.after, r.task): r.n_labels for r in scores.itertuples()}
    assert labels == {("base", "space-food"): 2, ("base", "music-sport"): 4, ("space-food", "space-food"): 2,
                      ("space-food", "music-sport"): 4, ("music-sport", "space-food"): 4,
                      ("music-sport", "music-sport"): 4}
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["resolved"]["scenario"] == "class-incremental"
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    assert "space-food" in capsys.readouterr().out


def test_custom_stream_splits_are_balanced_and_prompted(tmp_path):
    write_csv(tmp_path)
    stream = get_stream(str(write_stream(tmp_path)), seed=3)
    first = stream.tasks[0]
    assert first.classes == [" space", " food"] and len(first.train) == 8
    assert sorted(first.eval["test"]["label"]) == [0, 0, 1, 1]
    assert first.train[0]["prompt"].startswith("Note: a note about the ")


def test_editing_the_stream_file_changes_the_run_hash(tmp_path):
    write_csv(tmp_path)
    path = write_stream(tmp_path)
    before = RunConfig(stream=str(path)).config_hash()
    write_stream(tmp_path, test_size=2)
    assert RunConfig(stream=str(path)).config_hash() != before


def bad_cases(folder):
    """(description, stream file) pairs for every kind of bad input, and the text the error must contain."""
    write_csv(folder)
    (folder / "empty.csv").write_text("text,label\n")
    broken = folder / "broken.yaml"
    broken.write_text("name: x\ntasks: [\n  - {name: a\n")
    return [
        ("missing column", write_stream(folder, "missing.yaml", columns={"text": "sentence"}),
         "lacks column(s) sentence"),
        ("empty split", write_stream(folder, "empty.yaml", source="empty.csv"), "empty.csv"),
        ("no rows of a label",
         write_stream(folder, "norows.yaml", tasks=[{"name": "a", "labels": ["space", "weather"]}],
                      verbalizer={"space": " space", "weather": " weather"}),
         "weather"),
        ("label absent from verbalizer",
         write_stream(folder, "absent.yaml", verbalizer={"space": " space", "food": " food"}),
         "label(s) 'music', 'sport' are absent from the verbalizer"),
        ("template without placeholder", write_stream(folder, "template.yaml", template="Note:\nTopic:"),
         "lacks the placeholder {text}"),
        ("malformed yaml", broken, "not valid YAML (line"),
        ("unknown key", write_stream(folder, "unknown.yaml", labelz=1), "unknown key(s) labelz"),
        ("hub with no network", write_stream(folder, "hub.yaml", source="hub:stanfordnlp/imdb"), "'stanfordnlp/imdb'"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_bad_stream_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, monkeypatch, case):
    import datasets
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    what, path, message = bad_cases(tmp_path)[case]
    out = tmp_path / "out"
    assert main(["run", "--stream", str(path), "--out", str(out), *RUN]) == 2, what
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("continual: error: ") and message in err, (what, err)
    assert path.name in err
    assert not out.exists()


def test_bad_order_and_unknown_source_are_refused(tmp_path, capsys):
    assert main(["run", "--stream", "topics", "--order", "stories,reviews", "--out", str(tmp_path / "o"), *RUN]) == 2
    assert "--order 'stories,reviews' must be given, reversed, random or a comma-separated list of exactly these " \
           "tasks: reviews, commentary, stories" in capsys.readouterr().err
    assert main(["run", "--stream", "topics", "--source", "web", "--out", str(tmp_path / "o"), *RUN]) == 2
    assert "source must be one of offline, hub, got 'web'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_blank_cells_and_missing_fields_are_skipped_with_a_warning_never_trained_as_text(tmp_path, caplog):
    rows = [{"text": "" if i == 3 else f"a note about the rocket number {i}", "label": "space"} for i in range(6)]
    rows += [{"text": f"a note about the bread number {i}", "label": "food"} for i in range(6)]
    pd.DataFrame(rows).to_csv(tmp_path / "notes.csv", index=False)
    path = write_stream(tmp_path, train_size=3, test_size=2, verbalizer={"space": " space", "food": " food"},
                        tasks=[{"name": "one", "labels": ["space", "food"]}])
    with caplog.at_level("WARNING", logger="continual"):
        task = get_stream(str(path)).tasks[0]
    assert "skipped 1 row(s) with a blank text (data rows 4)" in caplog.text
    texts = list(task.train["prompt"]) + [p for split in task.eval.values() for p in split["prompt"]]
    assert texts and all(t.startswith("Note: a note about the ") and "None" not in t for t in texts)
    (tmp_path / "pairs.jsonl").write_text('{"prompt": "p1", "response": "r1"}\n{"prompt": "p2"}\n'
                                          '{"prompt": "p3", "response": "r3"}\n{"prompt": "p4", "response": null}\n'
                                          '{"prompt": "p5", "response": "r5"}\n')
    gen = tmp_path / "gen.yaml"
    gen.write_text(yaml.safe_dump({"name": "g", "scenario": "task-incremental", "kind": "generation",
                                   "source": "pairs.jsonl", "train_size": 2, "test_size": 1,
                                   "tasks": [{"name": "t"}]}))
    caplog.clear()
    with caplog.at_level("WARNING", logger="continual"):
        task = get_stream(str(gen)).tasks[0]
    assert "skipped 2 row(s) with a blank prompt or response (data rows 2, 4)" in caplog.text
    answers = list(task.train["completion"]) + list(task.eval["test"]["reference"])
    assert sorted(a.strip() for a in answers) == ["r1", "r3", "r5"]
