"""Atomic result files: a killed or failing write never leaves a truncated file, and the run resumes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from continual.errors import ContinualError
from continual.results import RunDir, write_atomic

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["run", "--model", "tiny", "--steps", "2", "--batch-size", "4", "--stream-option", "facts.camp_size=3",
        "--probe-option", "perplexity.tokens=200", "--probe-option", "kl.tokens=50", "--lr", "1e-3", "--no-progress"]


# The process dies (as under SIGKILL) on the second write of probe.csv, after the new text is in its temporary file and
# before the rename: the fault is injected here, by patching the rename, not by a hook in the production code.
DIE_ON_SECOND_PROBE_WRITE = """
import os, sys
import continual.results
real, seen = os.replace, []
def replace(src, dst, *args, **kwargs):
    # the result file, not the checkpoint's copy of the rows (written in its staging folder)
    if os.path.basename(str(dst)) == "probe.csv" and ".checkpoint-" not in str(dst):
        seen.append(dst)
        if len(seen) == 2:
            os._exit(70)
    return real(src, dst, *args, **kwargs)
continual.results.os.replace = replace
from continual.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli(out, die=False):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    command = ["-c", DIE_ON_SECOND_PROBE_WRITE] if die else ["-m", "continual"]
    return subprocess.run([sys.executable, *command, *ARGS, "--out", str(out)], capture_output=True,
                          text=True, env=env, timeout=600)


def parse_all(path: Path) -> None:
    for f in path.iterdir():
        if f.suffix == ".csv":
            pd.read_csv(f)
        elif f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix == ".yaml":
            yaml.safe_load(f.read_text())


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "a.json"
    write_atomic(target, '{"v": 1}')
    write_atomic(target, '{"v": 2}')
    assert json.loads(target.read_text()) == {"v": 2}
    assert sorted(os.listdir(tmp_path)) == ["a.json"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # an ordinary file, not mkstemp's private mode


def test_disk_full_is_one_clear_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "probe.csv"
    write_atomic(target, "after,cloze\nbase,0.8\n")
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr("continual.results.os.fsync", full)
    with pytest.raises(ContinualError, match="disk full while writing .*probe.csv; free space and re-run"):
        write_atomic(target, "after,cloze\nbase,0.8\nhogwarts,0.7\n")
    assert target.read_text() == "after,cloze\nbase,0.8\n"
    assert sorted(os.listdir(tmp_path)) == ["probe.csv"]


def test_abort_inside_a_result_write_leaves_parseable_files_and_the_rerun_completes(tmp_path):
    reference = cli(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "aborted"
    # the process dies in the second write of probe.csv (after stage 1 of 3)
    died = cli(out, die=True)
    assert died.returncode == 70, died.stderr
    assert any(p.name.startswith(".probe.csv.") for p in out.iterdir())  # the half-made write it left
    parse_all(out)
    probe = pd.read_csv(out / "probe.csv")
    assert list(probe["after"]) == ["base", "hogwarts"]  # the previous complete version
    resumed = cli(out)
    assert resumed.returncode == 0, resumed.stderr
    assert not [p for p in os.listdir(out) if p.endswith(".tmp") or p.startswith(".checkpoint")]  # swept
    for name in ("matrix.csv", "probe.csv", "scores.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / name), pd.read_csv(tmp_path / "reference" / name))


def test_corrupt_config_in_out_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("{{{ not yaml")
    with pytest.raises(ContinualError, match="is unreadable"):
        RunDir(tmp_path, {}, "abc").check(fresh=False)
