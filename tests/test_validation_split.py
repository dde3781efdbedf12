"""--validation-size: a split held out of each task's training data, scored like the others, for choosing settings
(a sweep's learning rate) without the test split; experiments report the chosen rows' test scores."""

import json

import numpy as np
import pandas as pd
import pytest

from continual.compare import compare_table, select_on, to_markdown
from continual.config import RunConfig
from continual.errors import ContinualError
from continual.runner import stream_for


@pytest.mark.parametrize("name", ["topics", "sentiment", "instructions"])
def test_validation_examples_leave_training_and_keep_their_answers(name):
    plain, held = stream_for(RunConfig(stream=name)), stream_for(RunConfig(stream=name, validation_size=12))
    for before, task in zip(plain.tasks, held.tasks):
        validation = task.eval["validation"]
        assert len(validation) == 12 and len(task.train) == len(before.train) - 12
        assert set(validation["prompt"]).isdisjoint(task.train["prompt"])  # never trained
        assert set(validation["prompt"]) <= set(before.train["prompt"])  # taken from the training data
        completion = dict(zip(before.train["prompt"], before.train["completion"]))
        for row in validation:
            if task.kind == "generation":
                assert row["reference"] == completion[row["prompt"]].strip()
            else:  # the label is the candidate the training completion began with
                assert completion[row["prompt"]].startswith(row["candidates"][row["label"]])
                assert row["candidates"] == task.answers
        assert {k: len(v) for k, v in task.eval.items() if k != "validation"} == \
            {k: len(v) for k, v in before.eval.items()}  # the test split is untouched


def test_facts_is_scored_on_its_training_facts_and_keeps_them():
    stream = stream_for(RunConfig(stream="facts", validation_size=5))
    assert all("validation" not in t.eval and len(t.train) == 90 for t in stream.tasks)
    assert stream.options["validation_split"]["scored_on_training_data"] == ["hogwarts", "middle-earth", "galaxy"]


def test_the_draw_is_seeded_and_part_of_the_run():
    a, b = (stream_for(RunConfig(stream="topics", validation_size=8, seed=s)).tasks[0].eval["validation"]["prompt"]
            for s in (0, 1))
    assert a != b and a == stream_for(RunConfig(stream="topics", validation_size=8)).tasks[0].eval["validation"][
        "prompt"]
    assert RunConfig(validation_size=8).config_hash() != RunConfig().config_hash()
    assert "validation_size" not in RunConfig().identity()  # runs recorded before the option keep their hash


def test_a_validation_split_as_large_as_the_training_data_is_refused():
    with pytest.raises(ContinualError, match="--validation-size 300 leaves task 'reviews' no training example "
                                             r"\(it has 300\); choose at most 299"):
        stream_for(RunConfig(stream="topics", validation_size=300))


def test_a_run_scores_the_validation_split_after_every_stage(tmp_path):
    import continual
    run = continual.run(stream="topics", tasks="reviews,stories", strategy="naive", model="tiny", steps=1,
                        batch_size=2, eval_cap=4, validation_size=6, probe="kl", probe_options={"kl.tokens": 8},
                        device="cpu", progress=False, plots=False, out=str(tmp_path / "run"))
    matrix = pd.read_csv(tmp_path / "run" / "matrix_validation.csv", index_col="after")
    assert list(matrix.index) == ["base", "reviews", "stories"] and matrix.notna().all().all()
    assert (run.scores[run.scores["split"] == "validation"]["n"] == 4).all()  # --eval-cap applies to it too
    row = compare_table([run]).set_index("strategy").loc["naive"]
    assert row["acc_validation"] == pytest.approx(matrix.loc["stories"].mean())
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"


def test_select_on_keeps_the_best_validation_row_per_strategy():
    table = pd.DataFrame({"strategy": ["base", "naive", "naive", "naive", "lora", "lora"],
                          "lr": ["", "3e-05", "1e-04", "3e-04", "5e-04", "1.5e-03"],
                          "n": [3] * 6,
                          "acc": [0.4, 0.5, 0.9, 0.7, 0.6, 0.8],  # the test split: never what is chosen on
                          "acc_validation": [0.4, 0.6, 0.8, 0.8, 0.7, 0.5]})
    table.attrs["metrics"] = {"acc": ("ACC", True, 3)}
    picked, chosen = select_on(table)
    assert chosen == {"naive": "1e-04", "lora": "5e-04"}  # naive: a tie on validation goes to the lower lr
    assert list(picked["acc"]) == [0.4, 0.9, 0.6] and picked.attrs["metrics"] == table.attrs["metrics"]
    assert "highest mean acc_validation (chosen on the validation split)" in to_markdown(picked)
    with pytest.raises(ContinualError, match="run with --validation-size N"):
        select_on(table.drop(columns="acc_validation"))
    assert np.isfinite(picked["acc_validation"]).all()
