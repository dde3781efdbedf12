import json

import numpy as np
import pandas as pd
import pytest
import yaml

import continual
from continual.errors import ContinualError
from continual.metrics import summarise
from continual.results import RunDir
from strategies.naive import Naive

FAST = dict(stream="facts", strategy="naive", model="tiny", steps=3, batch_size=4, camp_size=3, probe_tokens=200,
            kl_tokens=50, progress=False, lr=1e-3)
TASKS = ["hogwarts", "middle-earth", "galaxy"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "facts"
    return continual.run(out=str(out), **FAST)


def test_tiny_run_writes_every_file_with_the_right_shape(finished):
    path = finished.path
    for name in ("config.yaml", "matrix.csv", "matrix_reversed.csv", "matrix_heldout.csv", "scores.csv",
                 "probe.csv", "losses.csv", "summary.json"):
        assert (path / name).is_file(), name
    matrix = pd.read_csv(path / "matrix.csv", index_col="after")
    assert list(matrix.index) == ["base"] + TASKS and list(matrix.columns) == TASKS
    assert ((matrix >= 0) & (matrix <= 1)).all().all()
    for split in ("reversed", "heldout"):
        assert pd.read_csv(path / f"matrix_{split}.csv", index_col="after").shape == (4, 3)
    scores = pd.read_csv(path / "scores.csv")
    assert len(scores) == 4 * 3 * 3  # rows x tasks x splits
    probe = pd.read_csv(path / "probe.csv")
    assert list(probe["after"]) == ["base"] + TASKS
    assert probe.loc[0, "kl"] == 0 and probe.loc[0, "ppl_ratio"] == 1 and (probe["kl"][1:] > 0).all()
    losses = pd.read_csv(path / "losses.csv")
    assert list(losses["stage"]) == [t for t in TASKS for _ in range(3)] and np.isfinite(losses["loss"]).all()
    assert not (path / "checkpoint").exists()  # removed once the run completed


def test_summary_metrics_agree_with_the_written_matrix(finished):
    summary = json.loads((finished.path / "summary.json").read_text())
    matrix = pd.read_csv(finished.path / "matrix.csv", index_col="after")
    expected = summarise(matrix.loc[TASKS].to_numpy(), matrix.loc["base"].to_numpy())
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, abs=1e-6), key
    probe = pd.read_csv(finished.path / "probe.csv")
    assert summary["retention"] == pytest.approx(probe["retention"].iloc[-1], rel=1e-5)
    assert summary["status"] == "completed" and summary["trainable_parameters"] > 0
    assert summary["wall_time_s"] > 0 and summary["peak_memory_mb"] > 0
    assert set(summary["conventions"]) >= {"acc", "bwt", "fwt", "forgetting", "retention"}
    assert "GEM-style" in summary["conventions"]["fwt"] and "Chaudhry" in summary["conventions"]["forgetting"]
    config = yaml.safe_load((finished.path / "config.yaml").read_text())
    assert config["config"]["seed"] == 0 and config["resolved"]["device"] == "cpu"
    assert {"torch", "transformers"} <= set(config["versions"])


def test_finished_run_is_returned_not_redone_and_other_runs_are_refused(finished):
    before = {p.name: p.read_bytes() for p in finished.path.iterdir() if p.is_file()}
    again = continual.run(out=str(finished.path), **FAST)
    pd.testing.assert_frame_equal(again.matrix, finished.matrix)
    with pytest.raises(ContinualError, match="holds a different run"):
        continual.run(out=str(finished.path), **{**FAST, "seed": 1})
    assert {p.name: p.read_bytes() for p in finished.path.iterdir() if p.is_file()} == before


def test_a_second_process_on_the_same_directory_is_refused(finished):
    holder = RunDir(finished.path, {}, RunDir(finished.path, {}, "").existing_hash())
    holder.open(fresh=False)
    try:
        with pytest.raises(ContinualError, match="another continual process is writing"):
            continual.run(out=str(finished.path), **FAST)
    finally:
        holder.close()


def test_interrupted_run_resumes_to_the_uninterrupted_matrix(finished, tmp_path, monkeypatch):
    out = tmp_path / "resumed"

    def crash_on_third_stage(self, model, ctx):
        if ctx.index == 2:
            raise RuntimeError("simulated crash")
    monkeypatch.setattr(Naive, "before_stage", crash_on_third_stage)
    with pytest.raises(RuntimeError, match="simulated crash"):
        continual.run(out=str(out), **FAST)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["stages_completed"] == 2
    assert list(pd.read_csv(out / "matrix.csv", index_col="after").index) == ["base", "hogwarts", "middle-earth"]

    monkeypatch.undo()
    resumed = continual.run(out=str(out), export=True, **FAST)  # export changes no result, so it is the same run
    pd.testing.assert_frame_equal(resumed.matrix, finished.matrix, check_exact=True)
    pd.testing.assert_frame_equal(resumed.probe, finished.probe, check_exact=True)
    losses = pd.read_csv(out / "losses.csv")
    pd.testing.assert_series_equal(losses["loss"], finished.losses["loss"], check_exact=True)
    exported = continual.load_model(str(out / "model"))
    assert exported.source == str(out / "model") and exported.model.num_parameters() > 0


def test_same_seed_gives_the_same_numbers(finished, tmp_path):
    again = continual.run(out=str(tmp_path / "again"), **FAST)
    pd.testing.assert_frame_equal(again.matrix, finished.matrix, check_exact=True)
    pd.testing.assert_frame_equal(again.probe, finished.probe, check_exact=True)
