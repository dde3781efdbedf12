"""`continual run --stream <each built-in stream> --strategy naive --model tiny` runs end to end (small steps,
capped evaluation), and --order orders the stages."""

import json

import pandas as pd
import pytest

from continual.cli import main
from continual.config import RunConfig
from continual.runner import ordered, stream_for

SMALL = ["--strategy", "naive", "--model", "tiny", "--steps", "1", "--batch-size", "2", "--eval-cap", "4",
         "--probe-option", "perplexity.tokens=32", "--probe-option", "kl.tokens=8", "--no-progress"]


@pytest.mark.parametrize("stream,tasks", [("sentiment", "products,tweets"), ("topics", "reviews,stories"),
                                          ("instructions", "trivia,ai"), ("mixed", "")])
def test_every_builtin_stream_runs_on_the_tiny_model(tmp_path, monkeypatch, stream, tasks):
    """Two tasks of each (the mixed stream whole): every format, scenario and data source is exercised."""
    import continual.evaluation
    monkeypatch.setattr(continual.evaluation, "MAX_NEW_TOKENS", 8)  # the random tiny model never stops by itself
    out = tmp_path / stream
    assert main(["run", "--stream", stream, "--tasks", tasks, "--out", str(out), *SMALL]) == 0
    summary = json.loads((out / "summary.json").read_text())
    matrix = pd.read_csv(out / "matrix.csv", index_col="after")
    assert summary["status"] == "completed" and list(matrix.index) == ["base", *summary["tasks"]]
    assert matrix.notna().all().all() and ((matrix >= 0) & (matrix <= 1)).all().all()
    scores = pd.read_csv(out / "scores.csv")
    generation = scores[scores["metric"] == "rougeL_f1"]
    assert (generation["ref_loglik"] < 0).all()
    if stream in ("instructions", "mixed"):
        assert len(generation) and set(summary["matrix_metric"].values()) >= {"rougeL_f1"}
    assert (scores["n"] <= 4).all()


def test_order_options_reorder_the_stages_and_change_the_run():
    base = dict(stream="topics", out="unused")
    names = {order: [t.name for t in stream_for(RunConfig(**base, order=order)).tasks]
             for order in ("given", "reversed", "commentary,stories,reviews")}
    assert names == {"given": ["reviews", "commentary", "stories"], "reversed": ["stories", "commentary", "reviews"],
                     "commentary,stories,reviews": ["commentary", "stories", "reviews"]}
    random_0 = [t.name for t in ordered(stream_for(RunConfig(**base)).tasks, "random", 0)]
    assert sorted(random_0) == sorted(names["given"])
    assert len({tuple(t.name for t in ordered(stream_for(RunConfig(**base)).tasks, "random", s)) for s in range(8)}) > 1
    # --tasks picks, then --order orders what was picked
    picked = stream_for(RunConfig(**base, tasks="stories,reviews", order="reversed"))
    assert [t.name for t in picked.tasks] == ["reviews", "stories"]
    hashes = {RunConfig(**base, order=o).config_hash() for o in ("given", "reversed", "random")}
    assert len(hashes) == 3
