"""The run directory: one model of what a run holds (``Run``), one writer (``RunDir``: atomic files, identity, lock,
checkpoint), used by the runner, the Python API, compare, plots and the report.

  config.yaml          the resolved config, its hash, what was resolved (model source, device, tasks), versions
  scores.csv           long form: after, task, split, metric, accuracy, stderr, accuracy_norm, ref_loglik,
                       n_labels, n
                       (every split of every task after every row); every matrix is built from it
  matrix.csv           accuracy matrix R: row ``base`` then one row per stage (named after the task trained);
                       one column per task; values from each task's matrix split
  matrix_stderr.csv    the standard error of each cell of R (binomial for accuracies; scores.csv's stderr)
  matrix_<split>.csv   the same for the other evaluation splits (facts: reversed, heldout)
  matrix_logprob.csv,  where tasks are scored both ways (benchmark streams): the log-probability accuracy and the
  matrix_answer.csv    generated answer's score (exact match), whichever of them is not matrix.csv
  probe.csv            the probes' columns per row (base and every stage)
  losses.csv           every training step's loss (and strategy loss terms)
  predictions.csv      every evaluation example's answer from the final model
  summary.json         metrics, status, parameters, time, memory, conventions, the probes' column declarations
  checkpoint/          the model and strategy state after the last finished stage (removed when the run completes)
  plots/               the run's figures (continual.plots)
  strategy/            what a strategy records of its own (generative replay: the pseudo-examples it trained on)

Every file is written to a temporary name, fsynced and renamed, so a killed run never leaves a truncated file. In a
data-parallel run only the main process (rank 0) locks the directory and writes; the other processes' writes do
nothing, and they wait in ``open`` until the main process has locked and cleaned the directory.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from continual import distributed
from continual.errors import ContinualError

_UMASK = os.umask(0)
os.umask(_UMASK)

RESULT_FILES = ("config.yaml", "scores.csv", "probe.csv", "losses.csv", "summary.json")
# Everything a run (and plot/compare/report over it) writes into its directory: --fresh removes these and nothing
# else, and refuses a folder that holds anything more (a user's files are never ours to delete).
RUN_FILES = (*RESULT_FILES, "predictions.csv", "report.html", "comparison.md", "comparison.csv", "comparison.tex")
RUN_FOLDERS = ("checkpoint", "plots", "strategy", "model", "logs")
CHECKPOINT_ROWS = ("scores", "probe", "losses")  # a checkpoint's own copy of the rows, which a resume reads


def written_by_run(name: str) -> bool:
    """Whether an entry of a run directory is one a run writes (or a killed writer's hidden leftover)."""
    if name in RUN_FILES or name in RUN_FOLDERS or name == ".lock":
        return True
    if name.startswith("matrix") and name.endswith(".csv"):
        return True
    return name.startswith(".") and (name.endswith(".tmp") or name.startswith((".checkpoint-", ".model-")))


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, rename: readers see the old file or the new, never half."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary files
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise _write_error(path, exc) from exc
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_error(path: Path, exc: OSError) -> ContinualError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ContinualError(f"disk full while writing {path}; free space and re-run the same command to resume")
    return ContinualError(f"could not write {path}: {exc.strerror or exc}; check the output folder")


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null means "undefined" (e.g. BWT with one task)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return json_safe(value.item())
    return value


# scores.csv's column holding, on the base rows of a class-incremental stream, the base model's score over every
# task's labels (the final row's candidates); the matrix's base row b[j] is scored over the labels of tasks 0..j
FINAL_LABELS = "accuracy_final_labels"


def matrix_frame(scores: pd.DataFrame, split_of_task: dict[str, str] | str, rows: list[str],
                 tasks: list[str], values: str = "accuracy") -> pd.DataFrame:
    """Wide matrix from long scores: rows in ``rows`` order (base first), columns in task order; ``values`` the
    scores.csv column (accuracy: the matrix value; logprob_accuracy, answer_score: one of the two metrics)."""
    if isinstance(split_of_task, str):
        split_of_task = {t: split_of_task for t in tasks}
    if scores.empty:
        return pd.DataFrame(index=pd.Index([], name="after"), columns=tasks, dtype=float)
    keep = scores[[split_of_task.get(t) == s for t, s in zip(scores["task"], scores["split"])]]
    wide = keep.pivot(index="after", columns="task", values=values)
    wide = wide.reindex(index=[r for r in rows if r in wide.index], columns=tasks)
    wide.index.name = "after"
    wide.columns.name = None
    return wide


# ------------------------------------------------------------------------------------------------- the model

@dataclass
class Run:
    """What a run directory holds, in memory: what the runner returns and what compare, plots and the report read."""
    path: Path
    config: dict  # the resolved RunConfig (config.yaml's "config")
    summary: dict  # summary.json ({} while the run is unfinished)
    scores: pd.DataFrame
    probe: pd.DataFrame
    losses: pd.DataFrame
    resolved: dict = field(default_factory=dict)  # config.yaml's "resolved": what the config resolved to
    _predictions: pd.DataFrame | None = None

    @property
    def rows(self) -> list[str]:
        """Matrix rows: base, then the stages in training order (the order scores were recorded in)."""
        return list(dict.fromkeys(self.scores["after"])) if len(self.scores) else []

    @property
    def stages(self) -> list[str]:
        return [r for r in self.rows if r != "base"]

    @property
    def tasks(self) -> list[str]:
        return list(self.summary.get("tasks") or dict.fromkeys(self.scores["task"])) if len(self.scores) else []

    @property
    def matrix_split(self) -> dict[str, str]:
        return self.summary.get("matrix_split") or self.resolved.get("matrix_split") or {}

    @property
    def matrix(self) -> pd.DataFrame:
        """R: rows base then stages, one column per task, each task's matrix split."""
        return matrix_frame(self.scores, self.matrix_split, self.rows, self.tasks)

    @property
    def matrix_stderr(self) -> pd.DataFrame | None:
        """The standard error of each cell of R (scores.csv's ``stderr``: binomial for accuracies, over the cell's
        ``n`` examples); None for runs written before it was recorded."""
        if "stderr" not in self.scores:
            return None
        return matrix_frame(self.scores, self.matrix_split, self.rows, self.tasks, values="stderr")

    def base_in_final_labels(self, split: str | None = None) -> pd.Series:
        """The base model's score on each task in the final row's label space: b (the matrix's base row) except in
        a class-incremental stream, where b[j] is over the labels of tasks 0..j and this is over all of them."""
        split_of_task = self.matrix_split if split is None else split
        base = matrix_frame(self.scores, split_of_task, ["base"], self.tasks).loc["base"]
        if FINAL_LABELS not in self.scores:
            return base
        final = matrix_frame(self.scores, split_of_task, ["base"], self.tasks, values=FINAL_LABELS).loc["base"]
        return final.where(final.notna(), base)

    def split_matrix(self, split: str) -> pd.DataFrame:
        return matrix_frame(self.scores, split, self.rows, self.tasks)

    @property
    def splits(self) -> dict[str, pd.DataFrame]:
        """The other evaluation splits' matrices (facts: reversed, heldout)."""
        main = set(self.matrix_split.values())
        names = sorted(set(self.scores["split"]) - main) if len(self.scores) else []
        return {s: self.split_matrix(s) for s in names}

    @property
    def metric_matrices(self) -> dict[str, pd.DataFrame]:
        """Where some task is scored both ways (a benchmark stream's choice tasks: log-probability and the generated
        answer), the matrix of each: {"logprob": ..., "answer": ...} on each task's matrix split; else {}."""
        if "answer_score" not in self.scores or "logprob_accuracy" not in self.scores:
            return {}
        both = self.scores["answer_score"].notna() & self.scores["logprob_accuracy"].notna()
        if not both.any():
            return {}
        return {name: matrix_frame(self.scores, self.matrix_split, self.rows, self.tasks, values=column)
                for name, column in (("logprob", "logprob_accuracy"), ("answer", "answer_score"))}

    @property
    def default_order(self) -> bool:
        return not self.config.get("tasks") and self.config.get("order", "given") == "given"

    @property
    def predictions(self) -> pd.DataFrame | None:
        if self._predictions is None and (self.path / "predictions.csv").is_file():
            self._predictions = read_predictions(self.path / "predictions.csv")
        return self._predictions

    @property
    def probe_columns(self) -> dict[str, dict]:
        """The probes' column declarations (continual.probes.base.Column), as summary.json records them."""
        return self.summary.get("probe_columns") or self.resolved.get("probe_columns") or {}

    @classmethod
    def load(cls, path: str | os.PathLike) -> Run:
        """Read a run directory (complete or not); one ContinualError line if it is not a readable one."""
        path = Path(path)
        try:
            recorded = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
            summary_file = path / "summary.json"
            summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else {}
            frames = {n: _read_frame(path / f"{n}.csv") for n in ("scores", "probe", "losses")}
            config, resolved = recorded["config"], recorded.get("resolved") or {}
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError, pd.errors.ParserError) as exc:
            raise ContinualError(f"{path} is not a readable run directory ({type(exc).__name__}: {exc}); "
                                 "re-run it or leave it out") from None
        return cls(path, config, summary, frames["scores"], frames["probe"], frames["losses"], resolved)


def read_predictions(path: Path) -> pd.DataFrame:
    """predictions.csv with its texts kept as written (an answer "None" stays a string) and its numbers as numbers:
    correct True/False (None for generation tasks), the candidate indices and the per-example score."""
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    for column in ("index", "label_index", "predicted_index", "score"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column].replace("", None), errors="coerce")
    if "correct" in frame:
        frame["correct"] = frame["correct"].map({"True": True, "False": False, "": None})
    return frame


def _read_frame(path: Path) -> pd.DataFrame:
    """A result CSV, or an empty frame when it is absent or holds no rows (a run with no training step yet)."""
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


@dataclass
class Resume:
    """Where an existing run directory stands (RunDir.inspect)."""
    done: int = -1  # index of the last finished stage; -1: start with the base row
    rows: dict[str, pd.DataFrame] | None = None  # scores, probe, losses of the rows kept (base .. done)
    completed: Run | None = None  # a finished run of this config, returned as it is
    strategy_state: object = None  # the checkpoint's strategy state (torch.load of strategy.pt)


def _listed(names: list[str], most: int) -> str:
    """The first ``most`` names, comma-separated, and how many more there are."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _damaged(path: Path, what: str) -> ContinualError:
    return ContinualError(f"{path} is {what}, so the run cannot continue from it; re-run with --fresh to start over")


def _read_rows(path: Path, name: str, kept: list[str], tasks: list[str]) -> pd.DataFrame:
    """A result CSV's rows of ``kept`` (base and the finished stages), checked to hold every one of them."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise _damaged(path, "missing") from None
    except pd.errors.EmptyDataError:
        if name == "losses":
            return pd.DataFrame()  # no step logged (a plan without training steps)
        raise _damaged(path, "empty") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise _damaged(path, f"unreadable ({type(exc).__name__})") from None
    key = "stage" if name == "losses" else "after"
    if key not in frame:
        raise _damaged(path, f"without its '{key}' column")
    frame = frame[frame[key].astype(str).isin(kept)]
    if name == "losses":
        return frame
    if name == "scores":
        have = set(zip(frame["after"].astype(str), frame.get("task", pd.Series(dtype=str)).astype(str)))
        lacking = [f"{row}/{task}" for row in kept for task in tasks if (row, task) not in have]
    else:
        lacking = [row for row in kept if row not in set(frame["after"].astype(str))]
    if lacking:
        raise _damaged(path, f"missing rows ({_listed(lacking, 4)})")
    return frame


# ------------------------------------------------------------------------------------------------ the writer

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
            raise ContinualError(f"{cfg} is unreadable ({exc.__class__.__name__}); choose another --out, or --fresh "
                                 "to start over there") from None

    def foreign_entries(self) -> list[str]:
        """What the directory holds that no run writes (a user's files)."""
        if not self.path.is_dir():
            return []
        try:
            return sorted(name for name in os.listdir(self.path) if not written_by_run(name))
        except OSError as exc:
            raise ContinualError(f"cannot read the run directory {self.path}: {exc.strerror or exc}; choose another "
                                 "--out") from None

    def check(self, fresh: bool) -> None:
        """Refuse, before anything is written, a directory that holds something else."""
        try:
            if self.path.exists() and not self.path.is_dir():
                raise ContinualError(f"--out {self.path} is a file, not a directory; choose another --out")
        except OSError as exc:
            raise ContinualError(f"cannot use --out {self.path}: {exc.strerror or exc}; choose another --out") from None
        if fresh:  # whatever run is there goes (even an unreadable one), but only a run's own files go
            foreign = self.foreign_entries()
            if foreign:
                raise ContinualError(f"--fresh removes only a run's own files, but {self.path} also holds "
                                     f"{_listed(foreign, 5)}; "
                                     "move them or choose another --out")
            return
        old = self.existing_hash()
        if old is None and self.path.is_dir() and any(p.name in RESULT_FILES for p in self.path.iterdir()):
            raise ContinualError(f"{self.path} holds result files but no config.yaml; choose another --out, or "
                                 "--fresh to replace them")
        if old is not None and old != self.hash:
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
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.path / ".lock", "w")
        except OSError as exc:
            raise ContinualError(f"cannot create the run directory {self.path}: {exc.strerror or exc}; choose "
                                 "another --out") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if we die
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise ContinualError(f"another continual process is writing to {self.path}; wait for it or use "
                                 "another --out") from None
        if fresh and self.foreign_entries():  # checked again under the lock: nothing but a run's files goes
            self.close()
            self.check(fresh)
        for name in os.listdir(self.path):
            half_made = name.startswith(".") and (name.endswith(".tmp") or name.startswith((".checkpoint-", ".model-")))
            if half_made or (fresh and name != ".lock" and written_by_run(name)):  # (we hold the lock now)
                _remove(self.path / name)

    @property
    def locked(self) -> bool:
        return self._lock is not None

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- files
    def write_text(self, name: str, text: str) -> None:
        if self.writer:
            write_atomic(self.path / name, text)

    def write_yaml(self, name: str, data: dict) -> None:
        self.write_text(name, yaml.safe_dump(json_safe(data), sort_keys=False))

    def write_json(self, name: str, data: dict) -> None:
        self.write_text(name, json.dumps(json_safe(data), indent=2) + "\n")

    def write_csv(self, name: str, frame: pd.DataFrame, index: bool = False, text: bool = False) -> None:
        """Full precision (a resume reads these back); ``text``: every string quoted, so texts holding line breaks of
        any kind (a model's generations, users' data) read back as written."""
        quoting = csv.QUOTE_NONNUMERIC if text else csv.QUOTE_MINIMAL
        self.write_text(name, frame.to_csv(index=index, quoting=quoting))

    def write_results(self, run: Run) -> None:
        """Every result file of the rows so far: scores, the matrices built from them, probe rows, losses."""
        self.write_csv("scores.csv", run.scores)
        self.write_csv("matrix.csv", run.matrix, index=True)
        stderr = run.matrix_stderr  # built from scores once
        if stderr is not None:
            self.write_csv("matrix_stderr.csv", stderr, index=True)
        for split, frame in run.splits.items():
            self.write_csv(f"matrix_{split}.csv", frame, index=True)
        for metric, frame in run.metric_matrices.items():
            self.write_csv(f"matrix_{metric}.csv", frame, index=True)
        self.write_csv("probe.csv", run.probe)
        self.write_csv("losses.csv", run.losses)

    def save_strategy_file(self, name: str, frame: pd.DataFrame) -> None:
        """A strategy's own record (e.g. generated examples), as RUN/strategy/<name> (csv)."""
        if self.writer:
            path = self.path / "strategy" / name
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ContinualError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
            write_atomic(path, frame.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC))

    # -- where an existing run stands (read and checked before anything is loaded or written)
    def inspect(self, stages: list[str], tasks: list[str]) -> Resume:
        """A finished run to return as it is, a checkpoint to resume after, or nothing finished yet.

        Every file the answer depends on is read here; a damaged one is one ContinualError line naming it, and the
        directory is left exactly as it was."""
        if not (self.path / "config.yaml").is_file():
            return Resume()
        summary = None
        summary_path = self.path / "summary.json"
        if summary_path.is_file():
            try:
                summary = json.loads(summary_path.read_text(encoding="utf-8"))
                if not isinstance(summary, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                if not self.checkpoint.is_dir():  # nothing to resume from: a finished run's summary is lost
                    raise _damaged(summary_path, f"unreadable ({type(exc).__name__})") from None
                summary = None  # an unfinished run's summary is rewritten when it finishes
        if summary and summary.get("status") == "completed" and summary.get("config_hash") == self.hash:
            for name in CHECKPOINT_ROWS:
                _read_rows(self.path / f"{name}.csv", name, ["base", *stages], tasks)
            return Resume(done=len(stages) - 1, completed=Run.load(self.path))
        if not self.checkpoint.is_dir():
            return Resume()  # no stage finished (or its checkpoint is gone): start with the base row
        state_path = self.checkpoint / "state.json"
        try:
            done = json.loads(state_path.read_text(encoding="utf-8"))["stage"]
            if not isinstance(done, int) or not 0 <= done < len(stages):
                raise ValueError(f"stage {done!r} is not one of this run's 0..{len(stages) - 1}")
        except FileNotFoundError:
            raise _damaged(state_path, "missing") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _damaged(state_path, f"unreadable ({type(exc).__name__}: {exc})") from None
        for name in ("model.safetensors", "strategy.pt"):
            if not (self.checkpoint / name).is_file():
                raise _damaged(self.checkpoint / name, "missing")
        import torch
        try:  # the strategy's state is a pickle of its own objects (buffers, anchors, Fisher)
            strategy_state = torch.load(self.checkpoint / "strategy.pt", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - a damaged pickle raises anything
            raise _damaged(self.checkpoint / "strategy.pt", f"unreadable ({type(exc).__name__})") from None
        kept = ["base", *stages[:done + 1]]
        rows = {}
        for name in CHECKPOINT_ROWS:  # the checkpoint's own rows; a checkpoint without them: the result files
            own = self.checkpoint / f"{name}.csv"
            rows[name] = _read_rows(own if own.is_file() else self.path / f"{name}.csv", name, kept, tasks)
        return Resume(done=done, rows=rows, strategy_state=strategy_state)

    def load(self) -> Run:
        return Run.load(self.path)

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"
