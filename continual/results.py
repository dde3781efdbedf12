"""The run directory: atomic result files, the run's identity, a lock, and the checkpoint a resume starts from.

  config.yaml          the resolved config, its hash, what was resolved (model source, device, tasks), versions
  scores.csv           long form: after, task, split, accuracy, accuracy_norm, n (every split of every task)
  matrix.csv           accuracy matrix R: row ``base`` then one row per stage (named after the task trained);
                       one column per task; values from each task's matrix split
  matrix_<split>.csv   the same for the other evaluation splits (facts: reversed, heldout)
  probe.csv            retention probe per row (base and every stage)
  losses.csv           every training step's loss (and strategy loss terms)
  summary.json         metrics, status, parameters, time, memory, conventions
  checkpoint/          the model and strategy state after the last finished stage (removed when the run completes)

Every file is written to a temporary name and renamed, so a killed run never leaves a truncated file. In a
data-parallel run only the main process (rank 0) locks the directory and writes; the other processes' writes do
nothing, and they wait in ``open`` until the main process has locked and cleaned the directory.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from continual import distributed
from continual.errors import ContinualError

_UMASK = os.umask(0)
os.umask(_UMASK)

RESULT_FILES = ("config.yaml", "scores.csv", "probe.csv", "losses.csv", "summary.json")


_writes: dict[str, int] = {}


def _fault_point(name: str, f, text: str) -> None:
    """Test hook: CONTINUAL_FAULT_WRITE=<file name> makes the CONTINUAL_FAULT_AT-th write of that file (default 1)
    fail half-way, as CONTINUAL_FAULT_KIND says: ``abort`` (the process dies, as under SIGKILL) or ``enospc``."""
    if os.environ.get("CONTINUAL_FAULT_WRITE") != name:
        return
    _writes[name] = _writes.get(name, 0) + 1
    if _writes[name] != int(os.environ.get("CONTINUAL_FAULT_AT", "1")):
        return
    f.write(text[:len(text) // 2])
    f.flush()
    if os.environ.get("CONTINUAL_FAULT_KIND", "abort") == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os._exit(70)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, fsync, rename: readers see the old file or the new, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            _fault_point(path.name, f, text)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary files
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ContinualError(f"disk full while writing {path}; free space and re-run the same command to "
                                 "resume") from exc
        raise ContinualError(f"could not write {path}: {exc.strerror or exc}; check the --out directory") from exc
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null means "undefined" (e.g. BWT with one task)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def matrix_frame(scores: pd.DataFrame, split_of_task: dict[str, str] | str, rows: list[str],
                 tasks: list[str]) -> pd.DataFrame:
    """Wide matrix from long scores: rows in ``rows`` order (base first), columns in task order."""
    if isinstance(split_of_task, str):
        split_of_task = {t: split_of_task for t in tasks}
    keep = scores[[split_of_task.get(t) == s for t, s in zip(scores["task"], scores["split"])]]
    wide = keep.pivot(index="after", columns="task", values="accuracy")
    wide = wide.reindex(index=[r for r in rows if r in wide.index], columns=tasks)
    wide.index.name = "after"
    wide.columns.name = None
    return wide


class RunDir:
    def __init__(self, path: str | os.PathLike, identity: dict, config_hash: str):
        self.path = Path(path)
        self.identity, self.hash = identity, config_hash
        self._lock = None
        self.writer = distributed.is_main()  # data-parallel runs: only rank 0 writes (and locks)

    # -- identity and lock
    def existing_hash(self) -> str | None:
        cfg = self.path / "config.yaml"
        if not cfg.is_file():
            return None
        try:
            return yaml.safe_load(cfg.read_text(encoding="utf-8"))["config_hash"]
        except Exception as exc:
            raise ContinualError(f"{cfg} is unreadable ({exc.__class__.__name__}); choose another --out or remove "
                                 "that directory") from exc

    def check(self, fresh: bool) -> None:
        """Refuse, before anything is written, a directory that holds something else."""
        if self.path.exists() and not self.path.is_dir():
            raise ContinualError(f"--out {self.path} is a file, not a directory; choose another --out")
        old = self.existing_hash()
        if old is None and self.path.is_dir() and any(p.name in RESULT_FILES for p in self.path.iterdir()):
            raise ContinualError(f"{self.path} holds result files but no config.yaml; choose another --out")
        if old is not None and old != self.hash and not fresh:
            raise ContinualError(f"{self.path} holds a different run (config hash {old}, this one {self.hash}); "
                                 "use another --out, or --fresh to replace it")

    def open(self, fresh: bool) -> None:
        self.check(fresh)
        refused = None
        if self.writer:
            try:
                self._lock_and_clean(fresh)
            except ContinualError as exc:
                refused = str(exc)
        # data-parallel: the others wait here until the directory is locked and cleaned, and stop with the same
        # error if the main process could not have it
        refused = distributed.from_main(refused)
        if refused:
            raise ContinualError(refused)

    def _lock_and_clean(self, fresh: bool) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if we die
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise ContinualError(f"another continual process is writing to {self.path}; wait for it or use "
                                 "another --out") from None
        for name in os.listdir(self.path):
            half_made = name.startswith(".") and (name.endswith(".tmp") or name.startswith((".checkpoint-", ".model-")))
            if half_made or (fresh and name != ".lock"):  # a killed writer's leftovers (we hold the lock now)
                _remove(self.path / name)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- files
    def write_yaml(self, name: str, data: dict) -> None:
        if self.writer:
            write_atomic(self.path / name, yaml.safe_dump(_json_safe(data), sort_keys=False))

    def write_json(self, name: str, data: dict) -> None:
        if self.writer:
            write_atomic(self.path / name, json.dumps(_json_safe(data), indent=2) + "\n")

    def write_csv(self, name: str, frame: pd.DataFrame, index: bool = False) -> None:
        if self.writer:
            write_atomic(self.path / name, frame.to_csv(index=index))  # full precision: a resume reads these back

    def read_csv(self, name: str) -> pd.DataFrame | None:
        path = self.path / name
        return pd.read_csv(path, float_precision="round_trip") if path.is_file() else None

    def read_summary(self) -> dict | None:
        path = self.path / "summary.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"
