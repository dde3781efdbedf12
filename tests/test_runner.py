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

FAST = dict(stream="facts", strategy="naive", model="tiny", steps=3, batch_size=4,
            stream_options={"facts.camp_size": 3}, probe_options={"perplexity.tokens": 200, "kl.tokens": 50},
            progress=False, lr=1e-3)
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
    final = probe["retention"].iloc[-1]  # the tiny model is not clearly above chance: retention is undefined
    retention = summary["probe"]["retention"]
    assert (retention is None and np.isnan(final)) or retention == pytest.approx(final)
    assert summary["status"] == "completed" and summary["trainable_parameters"] > 0
    assert summary["wall_time_s"] > 0 and summary["peak_memory_mb"] > 0
    assert set(summary["conventions"]) >= {"acc", "bwt", "fwt", "forgetting", "retention", "cloze", "kl"}
    assert set(summary["probe_columns"]) == set(probe.columns) - {"after"}
    assert summary["probe_columns"]["retention"]["probe"] == "cloze"
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
    for key in ("acc", "bwt", "fwt", "forgetting", "probe"):
        assert resumed.summary[key] == finished.summary[key], key
    exported = continual.load_model(str(out / "model"))
    assert exported.source == str(out / "model") and exported.model.num_parameters() > 0


def test_same_seed_gives_the_same_numbers(finished, tmp_path):
    again = continual.run(out=str(tmp_path / "again"), **FAST)
    pd.testing.assert_frame_equal(again.matrix, finished.matrix, check_exact=True)
    pd.testing.assert_frame_equal(again.probe, finished.probe, check_exact=True)


def test_sigkill_mid_stage_then_the_same_command_finishes_with_the_uninterrupted_matrix(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-m", "continual", "run", "--model", "tiny", "--steps", "150", "--batch-size", "4",
            "--stream-option", "facts.camp_size=3", "--probe-option", "perplexity.tokens=200", "--probe-option",
            "kl.tokens=50", "--lr", "1e-3", "--no-progress"]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(root)}
    reference = subprocess.run(args + ["--out", str(tmp_path / "reference")], env=env, capture_output=True,
                               timeout=600)
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoint" / "state.json").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # first stage done, second under way
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").is_file()  # it died mid-run, before any summary
    assert list(pd.read_csv(out / "matrix.csv", index_col="after").index) == ["base", "hogwarts"]

    resumed = subprocess.run(args + ["--out", str(out)], env=env, capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("matrix.csv", "matrix_heldout.csv", "probe.csv", "losses.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / name), pd.read_csv(tmp_path / "reference" / name),
                                      check_exact=True)


def test_nan_loss_fails_the_stage_and_keeps_earlier_results(tmp_path, monkeypatch):
    import torch

    from continual.errors import TrainingDiverged

    def nan_on_second_stage(self, model, inputs, outputs):
        return {"poison": torch.tensor(float("nan"))} if self._stage == 1 else {}

    def remember_stage(self, model, ctx):
        self._stage = ctx.index
    monkeypatch.setattr(Naive, "loss_terms", nan_on_second_stage)
    monkeypatch.setattr(Naive, "before_stage", remember_stage)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match="stage 'middle-earth', step 1, strategy 'naive'"):
        continual.run(out=str(out), **FAST)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failed_stage"] == "middle-earth"
    assert summary["stages_completed"] == 1 and "loss became nan" in summary["error"]
    assert list(pd.read_csv(out / "matrix.csv", index_col="after").index) == ["base", "hogwarts"]
