import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import continual
from continual.errors import ContinualError
from tests.test_compare import synthetic_run

ROOT = Path(__file__).resolve().parents[1]
STREAM_SCRIPTS = ["facts", "sentiment", "topics", "instructions", "mixed"]


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_task_orders_and_learning_rates():
    from experiments.common import learning_rates, task_orders
    orders = task_orders(["a", "b", "c"], 6)
    assert orders[:3] == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]  # the stream's own, then rotations
    assert len({tuple(o) for o in orders}) == 6
    with pytest.raises(ContinualError, match="choose 1 to 6"):
        task_orders(["a", "b", "c"], 7)
    assert learning_rates(1e-4, [0.3, 1, 3]) == [3e-5, 1e-4, 3e-4]  # rounded: the lr is part of the run's hash
    assert learning_rates(5e-4, [0.3, 1, 3]) == [1.5e-4, 5e-4, 1.5e-3]


def test_every_stream_has_a_script_with_cpu_and_full_sizes():
    for name in STREAM_SCRIPTS:
        module = load_script(name)
        assert module.FULL.seeds >= 3 and module.FULL.steps > module.CPU.steps, name
        assert f"results/{name}" in module.__doc__


def test_plan_covers_strategies_rates_orders_and_seeds(tmp_path, monkeypatch, capsys):
    """The runner's plan and outputs, with each run replaced by a synthetic run directory (no training)."""
    calls = []

    def fake_run(**kw):
        calls.append(kw)
        synthetic_run(Path(kw["out"]), kw["strategy"], kw["seed"], kw["lr"], kw["tasks"], kw["steps"])
    monkeypatch.setattr(continual, "run", fake_run)
    facts = load_script("facts")
    out = tmp_path / "facts"
    code = facts.main("facts", facts.__doc__, facts.CPU, facts.FULL,
                      ["--strategies", "naive,lora", "--sweep", "naive", "--lr-factors", "1,3", "--seeds", "2",
                       "--orders", "2", "--steps", "3", "--model", "tiny", "--out", str(out), "--no-progress"])
    assert code == 0
    # naive: 2 learning rates x 2 orders x 2 seeds; lora (not swept): its default only, 2 orders x 2 seeds
    assert len(calls) == 12 and {c["steps"] for c in calls} == {3}
    assert sorted({(c["strategy"], c["lr"]) for c in calls}) == [("lora", 5e-4), ("naive", 1e-4), ("naive", 3e-4)]
    assert {c["tasks"] for c in calls} == {"", "middle-earth,galaxy,hogwarts"}
    assert (out / "naive" / "lr3e-04" / "order1-seed1" / "summary.json").is_file()
    table = pd.read_csv(out / "comparison.csv", dtype={"lr": str})
    naive = table[(table["strategy"] == "naive") & (table["lr"] == "3e-04")].iloc[0]
    accs = [json.loads(p.read_text())["acc"] for p in (out / "naive" / "lr3e-04").glob("*/summary.json")]
    assert naive["n"] == 4 and naive["acc"] == pytest.approx(sum(accs) / 4)
    for name in ("comparison.md", "comparison.tex", "report.html", "plots/learning_vs_forgetting.png",
                 "plots/forgetting_curves.svg"):
        assert (out / name).is_file(), name
    printed = capsys.readouterr().out
    assert "| naive | 3e-04 | 4 |" in printed
    # a sweep: matched.md holds naive at its default lr and each other strategy at its nearest-learning lr
    matched = pd.read_csv(out / "matched.csv", dtype={"lr": str})
    assert list(zip(matched["strategy"], matched["lr"].fillna(""))) == [("base", ""), ("naive", "1e-04"),
                                                                         ("lora", "5e-04")]
    assert "learning rates matching naive@1e-04's learned" in printed and (out / "matched.md").is_file()


def test_benchmark_scripts_run_the_papers_named_orders_from_the_data_dir(tmp_path, monkeypatch):
    from tests.test_streams_benchmarks import write_trace_layout
    calls = []

    def fake_run(**kw):
        calls.append(kw)
        synthetic_run(Path(kw["out"]), kw["strategy"], kw["seed"], kw["lr"], "", kw["steps"])
    monkeypatch.setattr(continual, "run", fake_run)
    root = write_trace_layout(tmp_path / "data")
    script = load_script("standard_cl")
    code = script.main("standard-cl", script.__doc__, script.CPU, script.FULL,
                       ["--data-dir", str(root), "--strategies", "naive", "--lr-factors", "1", "--orders", "3",
                        "--steps", "2", "--model", "tiny", "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    assert [c["order"] for c in calls] == ["1", "2", "3"] and {c["data_dir"] for c in calls} == {str(root)}
    assert script.main("standard-cl", script.__doc__, script.CPU, script.FULL,
                       ["--data-dir", str(root), "--orders", "4", "--out", str(tmp_path / "o")]) == 2


def test_bad_flags_fail_before_any_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(continual, "run", lambda **kw: pytest.fail("no run should start"))
    facts = load_script("facts")
    for argv, message in ((["--strategies", "naive,nonsense"], "nonsense"), (["--lr-factors", "x"], "--lr-factors"),
                          (["--orders", "9"], "--orders 9")):
        assert facts.main("facts", facts.__doc__, facts.CPU, facts.FULL, argv + ["--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_facts_script_runs_end_to_end_and_resumes(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text("stream_options: {facts.camp_size: 3}\nbatch_size: 4\n"
                      "probe_options: {perplexity.tokens: 200, kl.tokens: 50}\n")
    command = [sys.executable, str(ROOT / "experiments" / "facts.py"), "--model", "tiny", "--steps", "2",
               "--strategies", "naive", "--lr-factors", "1", "--config", str(config), "--out", str(tmp_path / "out"),
               "--no-progress"]
    env = {"WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}  # no PYTHONPATH: the
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)  # script finds the package
    assert done.returncode == 0, done.stderr
    summary_path = tmp_path / "out" / "naive" / "lr1e-04" / "order0-seed0" / "summary.json"
    summary = json.loads(summary_path.read_text())
    line = next(line for line in done.stdout.splitlines() if line.startswith("| naive |"))
    assert f"{summary['acc']:.3f}" in line
    before = summary_path.stat().st_mtime_ns
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0 and summary_path.stat().st_mtime_ns == before  # the finished run is reused
