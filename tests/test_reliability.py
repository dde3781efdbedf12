"""A damaged run directory, an unwritable or full disk, signals and bad options: one `continual: error:` line and
exit status 2 (never a traceback), no file of an earlier stage changed, and always a way to a finished run (resume
where the checkpoint is intact, or --fresh)."""

import contextlib
import errno
import io
import json
import os
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from continual import runner
from continual.cli import main

RUN = ["run", "--model", "tiny", "--steps", "1", "--batch-size", "2", "--stream-option", "facts.camp_size=2",
       "--probe", "cloze", "--no-progress", "--no-plots", "--eval-batch-size", "8"]
STAGES = ["hogwarts", "middle-earth", "galaxy"]


def cli(args: list[str]) -> tuple[int, list[str]]:
    """(exit status, stderr lines) of the CLI run in-process; an exception escaping it fails the test."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, [line for line in err.getvalue().splitlines() if line.strip()]


def one_error(code: int, lines: list[str], *words: str) -> str:
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("continual: error: "), lines
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def values(folder: Path, name: str = "scores.csv") -> pd.DataFrame:
    return pd.read_csv(folder / name)


def interrupt_at(monkeypatch, stage_index: int, how):
    """Make the run stop when stage ``stage_index`` starts training (``how()`` raises or signals)."""
    real, calls = runner.train_stage, []

    def train_stage(model, strategy, ctx, config, steps, **kwargs):
        calls.append(ctx.index)
        if ctx.index == stage_index:
            how()
        return real(model, strategy, ctx, config, steps, **kwargs)
    monkeypatch.setattr(runner, "train_stage", train_stage)
    return calls


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A finished run, and the same run stopped by SIGTERM as its second stage began (stage 0 checkpointed)."""
    root = tmp_path_factory.mktemp("reliability")
    assert cli(RUN + ["--out", str(root / "finished")])[0] == 0
    with pytest.MonkeyPatch.context() as mp:
        interrupt_at(mp, 1, lambda: os.kill(os.getpid(), signal.SIGTERM))
        code, lines = cli(RUN + ["--out", str(root / "stopped")])
    assert code == 143 and lines == ["continual: interrupted (SIGTERM); re-run the same command to resume after "
                                     "the last finished stage"]
    return root


def copy(made: Path, name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(made / name, target)
    return target


def test_sigterm_records_where_the_run_stopped(made):
    summary = json.loads((made / "stopped" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["stages_completed"] == 1
    assert summary["failed_stage"] == "middle-earth"
    assert json.loads((made / "stopped" / "checkpoint" / "state.json").read_text()) == {"stage": 0}


# ------------------------------------------------------------------------------------------------ --fresh

def test_fresh_refuses_a_folder_with_user_files_and_deletes_nothing(tmp_path):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.txt").write_text("three years of work")
    (folder / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = snapshot(folder)
    one_error(*cli(RUN + ["--out", str(folder), "--fresh"]), "--fresh removes only a run's own files", "sub",
              "thesis.txt")
    assert snapshot(folder) == before


def test_fresh_removes_only_run_files_and_replaces_an_unreadable_run(made, tmp_path):
    out = copy(made, "stopped", tmp_path)
    (out / "config.yaml").write_text(":: not yaml [")
    one_error(*cli(RUN + ["--out", str(out)]), "config.yaml is unreadable", "--fresh")
    (out / "plots").mkdir()
    (out / "plots" / "old.png").write_bytes(b"png")
    assert cli(RUN + ["--out", str(out), "--fresh"])[0] == 0
    assert not (out / "plots" / "old.png").exists()
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    pd.testing.assert_frame_equal(values(out), values(made / "finished"))


# ----------------------------------------------------------------------------------- a finished run, damaged

def test_a_finished_run_is_read_never_written(made, tmp_path):
    out = copy(made, "finished", tmp_path)
    (out / "matrix.csv").unlink()  # derived: the returned run rebuilds it in memory
    before = snapshot(out)
    assert cli(RUN + ["--out", str(out)])[0] == 0
    assert snapshot(out) == before


@pytest.mark.parametrize("damage, words", [
    (lambda d: (d / "summary.json").write_text((d / "summary.json").read_text()[:40]), ["summary.json", "unreadable"]),
    (lambda d: (d / "scores.csv").unlink(), ["scores.csv", "missing"]),
    (lambda d: (d / "probe.csv").write_text("after,cloze_accuracy\nbase,0.5\n"), ["probe.csv", "missing rows"]),
], ids=["summary-truncated", "scores-removed", "probe-rows-lost"])
def test_a_damaged_finished_run_is_one_line_and_left_as_it_was(made, tmp_path, damage, words):
    out = copy(made, "finished", tmp_path)
    damage(out)
    before = snapshot(out)
    one_error(*cli(RUN + ["--out", str(out)]), *words, "--fresh")
    assert snapshot(out) == before


# ------------------------------------------------------------------------------- an unfinished run, damaged

@pytest.mark.parametrize("damage", [
    lambda d: (d / "scores.csv").write_text((d / "scores.csv").read_text()[:200]),
    lambda d: (d / "scores.csv").unlink(),
    lambda d: ((d / "probe.csv").unlink(), (d / "matrix.csv").unlink(), (d / "losses.csv").unlink()),
    lambda d: (d / "summary.json").write_text("{"),
], ids=["scores-truncated", "scores-removed", "probe-matrix-losses-removed", "summary-truncated"])
def test_resume_rebuilds_lost_result_files_from_the_checkpoint(made, tmp_path, damage):
    out = copy(made, "stopped", tmp_path)
    damage(out)
    assert cli(RUN + ["--out", str(out)])[0] == 0
    finished = made / "finished"
    for name in ("scores.csv", "probe.csv", "matrix.csv"):  # the same numbers as the run never stopped
        pd.testing.assert_frame_equal(values(out, name), values(finished, name))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["stages"] == STAGES
    losses = values(out, "losses.csv")
    assert sorted(set(losses["stage"])) == sorted(STAGES)  # stage 0's steps kept, not retrained


@pytest.mark.parametrize("damage, words", [
    (lambda c: (c / "state.json").write_text(""), ["state.json", "unreadable"]),
    (lambda c: (c / "state.json").write_text('{"stage": 7}'), ["state.json", "stage 7"]),
    (lambda c: (c / "strategy.pt").unlink(), ["strategy.pt", "missing"]),
    (lambda c: (c / "strategy.pt").write_bytes(b""), ["strategy.pt", "unreadable"]),
    (lambda c: (c / "model.safetensors").unlink(), ["model.safetensors", "missing"]),
    (lambda c: (c / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}"),
     ["model.safetensors", "cannot be loaded"]),
], ids=["state-empty", "state-wrong-stage", "strategy-removed", "strategy-empty", "weights-removed", "weights-empty"])
def test_a_damaged_checkpoint_is_one_line_and_changes_nothing(made, tmp_path, damage, words):
    out = copy(made, "stopped", tmp_path)
    damage(out / "checkpoint")
    before = snapshot(out)
    one_error(*cli(RUN + ["--out", str(out)]), *words, "--fresh")
    assert snapshot(out) == before


def test_after_a_damaged_checkpoint_fresh_gives_a_finished_run(made, tmp_path):
    out = copy(made, "stopped", tmp_path)
    (out / "checkpoint" / "strategy.pt").unlink()
    assert cli(RUN + ["--out", str(out), "--fresh"])[0] == 0
    pd.testing.assert_frame_equal(values(out), values(made / "finished"))


def test_changed_data_is_another_run(tmp_path):
    rows = [{"text": f"a note about the {w} number {i}", "label": lab}
            for lab, w in (("space", "rocket"), ("food", "bread")) for i in range(12)]
    pd.DataFrame(rows).to_csv(tmp_path / "notes.csv", index=False)
    spec = {"name": "notes", "scenario": "domain-incremental", "source": "notes.csv", "template": "Note: {text}\n"
            "Topic:", "train_size": 6, "test_size": 4, "verbalizer": {"space": " space", "food": " food"},
            "tasks": [{"name": "one", "labels": ["space", "food"]}]}
    (tmp_path / "notes.yaml").write_text(yaml.safe_dump(spec))
    args = [a for a in RUN if a != "facts.camp_size=2" and a != "--stream-option"]
    args += ["--stream", str(tmp_path / "notes.yaml"), "--out", str(tmp_path / "run")]
    assert cli(args)[0] == 0
    rows[0]["text"] = "a note about the comet number 0"  # the same file name and YAML, other examples
    pd.DataFrame(rows).to_csv(tmp_path / "notes.csv", index=False)
    before = snapshot(tmp_path / "run")
    one_error(*cli(args), "holds a different run")
    assert snapshot(tmp_path / "run") == before


# ------------------------------------------------------------------------------------ disks and folders

def test_disk_full_while_saving_a_checkpoint_keeps_the_previous_one(made, tmp_path, monkeypatch):
    from safetensors import SafetensorError
    out = copy(made, "stopped", tmp_path)
    real = runner.save_model

    def full(model, path, *args, **kwargs):
        real(model, path, *args, **kwargs)  # the file is written, then the disk fills before the state is
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(runner, "save_model", full)
    one_error(*cli(RUN + ["--out", str(out)]), "disk full while writing the checkpoint", "previous checkpoint")
    assert json.loads((out / "checkpoint" / "state.json").read_text()) == {"stage": 0}
    assert not [p for p in out.iterdir() if p.name.startswith(".checkpoint-")]  # no half-written staging left
    assert json.loads((out / "summary.json").read_text())["stages_completed"] == 1
    monkeypatch.setattr(runner, "save_model", real)
    assert cli(RUN + ["--out", str(out)])[0] == 0  # freed: the same command finishes the run
    pd.testing.assert_frame_equal(values(out), values(made / "finished"))


def test_disk_full_while_writing_results(tmp_path, monkeypatch):
    import continual.results as results

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(results.tempfile, "mkstemp", full)
    one_error(*cli(RUN + ["--out", str(tmp_path / "run")]), "disk full while writing", "config.yaml")


def test_unwritable_out_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    one_error(*cli(RUN + ["--out", str(tmp_path / "a-file")]), "is a file, not a directory")
    one_error(*cli(RUN + ["--out", str(tmp_path / "a-file" / "run")]), "cannot create the run directory",
              "Not a directory")
    one_error(*cli(RUN + ["--out", "/proc/continual-test/run"]), "cannot create the run directory")
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)
    monkeypatch.setattr(Path, "mkdir", read_only)
    one_error(*cli(RUN + ["--out", str(tmp_path / "ro")]), "cannot create the run directory", "Read-only")
    assert not (tmp_path / "ro").exists()


# ------------------------------------------------------------------------------------------------ options

@pytest.mark.parametrize("flags, words", [
    (["--max-grad-norm", "nan"], ["max_grad_norm", "finite"]),
    (["--max-grad-norm", "-1"], ["max_grad_norm", "at least 0"]),
    (["--lr", "0"], ["lr", "greater than 0"]),
    (["--steps", "0"], ["steps", "at least 1"]),
    (["--batch-size", "two"], ["batch_size", "int"]),
    (["--max-length", "1"], ["--max-length 1 leaves no answer token", "raise --max-length"]),
    (["--strategy", "lora", "--strategy-option", "lora.r=0"], ["lora.r", "at least 1"]),
    (["--strategy", "lora", "--strategy-option", "lora.dropout=1.5"], ["lora.dropout", "at most"]),
    (["--strategy", "ewc", "--strategy-option", "ewc.lam=-1"], ["ewc.lam", "at least 0"]),
    (["--strategy", "ewc", "--strategy-option", "ewc.lam=inf"], ["ewc.lam", "finite"]),
    (["--strategy", "replay", "--strategy-option", "replay.ratio=2"], ["replay.ratio", "at most 1"]),
    (["--strategy", "replay", "--strategy-option", "replay.policy=fifo"], ["replay.policy", "reservoir"]),
    (["--strategy", "naive", "--strategy-option", "ewc.lam=1"], ["ewc.lam", "name no strategy"]),
], ids=lambda v: "_".join(v) if isinstance(v, list) else None)
def test_each_bad_option_is_one_line(tmp_path, flags, words):
    one_error(*cli(RUN + ["--out", str(tmp_path / "run"), *flags]), *words)
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_a_penalty_that_overflows_the_gradient_stops_the_run_as_failed(tmp_path):
    """ewc.lam=1e38 is a finite number, but its penalty gradient is not: the stage stops, it is not completed."""
    out = tmp_path / "run"
    one_error(*cli(RUN + ["--out", str(out), "--strategy", "ewc", "--steps", "3", "--strategy-option",
                          "ewc.lam=1e38"]), "gradient norm became inf", "penalty weight")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failed_stage"] == "middle-earth"
    assert summary["stages_completed"] == 1  # stage 0 has no anchor yet, so no penalty


# ------------------------------------------------------------------------------- generated bad inputs

def _option_fields():
    """(key, type) of every RunConfig number and every strategy option, the targets of the generated values."""
    from continual.config import RunConfig
    from continual.options import _base_type, field_types
    from strategies import STRATEGIES
    keys = []
    for name in STRATEGIES:
        cls = STRATEGIES.resolve(name).value.Config
        hints = field_types(cls)
        keys += [(f"{name}.{f}", _base_type(hints[f])[0]) for f in hints]
    hints = field_types(RunConfig)
    keys += [(f, _base_type(hints[f])[0]) for f in ("steps", "batch_size", "lr", "warmup_steps", "max_grad_norm",
                                                   "max_length", "eval_batch_size", "eval_cap", "seed")]
    return keys


TEXT = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**40, 10**40).map(str),
                 st.text(max_size=12), st.sampled_from(["", "none", "true", "1e999", "-0", "0x10", "[1]", "a,b"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(_option_fields()), value=TEXT)
def test_generated_option_values_never_traceback_nor_touch_a_run(made, field, value):
    """Every value of every option, against an existing finished run: accepted (the same run, or refused as a
    different one) or refused as bad input, always in one line, and the run's files untouched."""
    key, _ = field
    out = made / "finished"
    before = snapshot(out)
    if "." in key:
        strategy = key.partition(".")[0]
        args = RUN + ["--out", str(out), "--strategy", strategy, "--strategy-option", f"{key}={value}"]
    else:
        args = RUN + ["--out", str(out), f"--{key.replace('_', '-')}={value}"]
    code, lines = cli(args)
    assert code in (0, 2), (args, lines)
    if code == 2:
        one_error(code, lines)
    assert snapshot(out) == before


YAML_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) |
                           st.text(max_size=8), lambda inner: st.lists(inner, max_size=3) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
STREAM_KEYS = ["name", "scenario", "source", "template", "train_size", "test_size", "verbalizer", "tasks", "labels",
               "columns", "header", "names", "label_names", "kind", "text", "label"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=st.dictionaries(st.sampled_from(STREAM_KEYS), YAML_VALUES, max_size=6),
       csv_text=st.sampled_from(["", "text,label\n", "text,label\na,b\n", "\xe9t\xe9,label\n", "a\n\"b,c\n",
                                 "text,label\n,x\nhello,\n"]))
def test_generated_stream_files_are_refused_in_one_line(tmp_path_factory, spec, csv_text):
    folder = tmp_path_factory.mktemp("gen")
    (folder / "data.csv").write_bytes(csv_text.encode("latin-1"))
    spec.setdefault("source", "data.csv")
    (folder / "s.yaml").write_text(yaml.safe_dump(spec))
    args = [a for a in RUN if a not in ("--stream-option", "facts.camp_size=2")]
    code, lines = cli(args + ["--stream", str(folder / "s.yaml"), "--out", str(folder / "run")])
    one_error(code, lines)
    assert not (folder / "run").exists()


def test_a_run_writes_each_cells_standard_error_beside_the_matrix(made):
    out = made / "finished"
    matrix = pd.read_csv(out / "matrix.csv", index_col="after")
    stderr = pd.read_csv(out / "matrix_stderr.csv", index_col="after")
    scores = values(out).set_index(["after", "task", "split"])
    assert list(stderr.index) == list(matrix.index) and list(stderr.columns) == list(matrix.columns)
    for row in matrix.index:
        for task in matrix.columns:
            n = scores.loc[(row, task, "train"), "n"]
            p = matrix.loc[row, task]
            assert stderr.loc[row, task] == pytest.approx((p * (1 - p) / n) ** 0.5)
