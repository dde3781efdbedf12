import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_facts_experiment_runs_each_strategy_and_tabulates_its_summary(tmp_path):
    out = tmp_path / "facts"
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "facts.py"), "--model", "tiny", "--steps", "2",
                           "--out", str(out)], capture_output=True, text=True, timeout=600,
                          env={"WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "naive" / "seed0" / "summary.json").read_text())
    line = next(l for l in done.stdout.splitlines() if l.startswith("naive"))
    assert f"{summary['acc']:+.3f}" in line and f"{summary['bwt']:+.3f}" in line
