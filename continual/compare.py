"""Strategy x metric comparison tables over any number of run directories, with Student-t 95% intervals.

    runs = find_runs(["results/facts"])           # run directories, or folders holding them
    table = compare_table(runs)                    # pandas DataFrame: one row per group, mean and CI per metric
    write_tables(table, "results/facts")           # comparison.md, comparison.csv, comparison.tex

Runs are grouped by everything in their config except the seed and the task order, so several seeds (and task
orders) of one strategy at one learning rate form one row: the mean, the half-width of the Student-t 95% interval
(t_{0.975, n-1} * s / sqrt(n), s the sample standard deviation; none for one run) and n. Only permutations of one
task SET pool: ``--tasks`` picks tasks as well as ordering them, so the set of tasks a run trained (sorted) is part
of its row's key (``task_set``) and a 2-task subset never shares a row with the full stream. ``n`` is the runs in
the row; ``<metric>_n`` the runs where that metric is defined (non-null, finite), which is the n of its mean and
interval. A ``base`` row holds the model before any training, read from the runs' base rows (one per distinct seed
and task set).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from continual.config import NOT_HASHED
from continual.errors import ContinualError
from continual.metrics import CONVENTIONS
from continual.results import FINAL_LABELS, Run, write_atomic

log = logging.getLogger(__name__)

# Table columns from the accuracy matrix, in order, with what each holds and whether higher is better. The probes'
# columns follow (declared by each probe, read from the runs' summary.json), then what the run cost.
MATRIX_METRICS = {
    "acc": (CONVENTIONS["acc"], True),
    "learned": ("mean over tasks of R[j,j] - b[j]: how much each stage learned its own task (a reference's single "
                "stage: final row - b)", True),
    "bwt": (CONVENTIONS["bwt"], True),
    "fwt": (CONVENTIONS["fwt"], True),
    "forgetting": (CONVENTIONS["forgetting"], False),
}
COST_METRICS = {
    "trainable": ("trainable parameters", False),
    "wall_s": ("wall time of the whole run, seconds", False),
    "memory_mb": ("peak memory, MB (CUDA: max allocated; CPU: process peak RSS)", False),
}
# Fields of a run's config that do not make it a different experiment: replicates of one row. ``tasks`` is not one
# of them but is replaced in the key by the (sorted) set of tasks the run trained: its order is a replicate field,
# its choice of tasks is not.
REPLICATE_FIELDS = ("seed", "order")
TASK_FIELDS = ("tasks",)  # replaced in the key by task_set(run): the set decides the row, the order does not
# Fields that decide the base model's scores (the base row is shared by every strategy trained from it).
BASE_FIELDS = ("stream", "source", "stream_options", "model", "chat_template", "eval_cap", "max_length",
               "general_text", "probe", "probe_options")
BASE_LABEL = "base"


def probe_metrics(runs: list[Run]) -> dict[str, dict]:
    """The headline probe columns of these runs, in the order their probes declare them: {column: declaration}."""
    columns: dict[str, dict] = {}
    for run in runs:
        for name, column in run.probe_columns.items():
            if column.get("headline", True):
                columns.setdefault(name, column)
    return columns


def metric_notes(runs: list[Run]) -> dict[str, tuple[str, bool | None, int]]:
    """Every table metric of these runs: (what it holds, whether higher is better, decimal places)."""
    probes = {k: (c["description"], c.get("higher_is_better"), int(c.get("digits", 3)))
              for k, c in probe_metrics(runs).items()}
    fixed = {k: (text, higher, 3) for k, (text, higher) in {**MATRIX_METRICS, **COST_METRICS}.items()}
    kinds = {k: (f"mean over the tasks scored by {k[4:-1]} of the score after the last stage (a stream whose "
                 "tasks are scored on different scales gets one ACC per scale)", True, 3)
             for k in dict.fromkeys(m for r in runs for m in scale_accs(r))}
    return {"acc": fixed["acc"], **kinds, **{k: fixed[k] for k in MATRIX_METRICS if k != "acc"}, **probes,
            **{k: fixed[k] for k in COST_METRICS}}


def scale_accs(run: Run, row: pd.Series | None = None) -> dict[str, float]:
    """``acc[<metric>]`` per scoring metric of a run's tasks (accuracy, rougeL_f1, ...) over a matrix row (default:
    the final one), where the tasks are scored by more than one: the mixed stream's ACC averages accuracy with
    ROUGE-L, and these keep the two apart. Empty for a stream on one scale."""
    metrics = run.summary.get("matrix_metric") or {}
    if len(set(metrics.values())) < 2:
        return {}
    row = run.matrix.loc[run.stages[-1]] if row is None else row
    return {f"acc[{m}]": float(np.mean([row[t] for t, k in metrics.items() if k == m]))
            for m in dict.fromkeys(metrics.values())}


def is_run_dir(path: Path) -> bool:
    return (path / "summary.json").is_file() and (path / "config.yaml").is_file()


def find_runs(paths, include_incomplete: bool = False) -> list[Run]:
    """Every run directory given, or found (recursively) under the folders given; completed runs only."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ContinualError(f"{p} does not exist; give run directories (with summary.json) or folders holding "
                                 "them")
        found += [p] if is_run_dir(p) else sorted(d.parent for d in p.rglob("summary.json") if is_run_dir(d.parent))
    found = list(dict.fromkeys(d.resolve() for d in found))
    runs, skipped = [], []
    for d in found:
        try:
            run = Run.load(d)
        except ContinualError as exc:  # one damaged directory does not hide the others
            log.warning("skipping %s", exc)
            continue
        (runs if run.summary.get("status") == "completed" or include_incomplete else skipped).append(run)
    for run in skipped:
        log.warning("skipping %s: status '%s' (re-run it to finish)", run.path, run.summary.get("status"))
    runs.sort(key=lambda r: (_strategy_rank(r.summary.get("strategy", ""), r.summary.get("reference", False),
                                            r.summary.get("strategy_rank")),
                             float(r.summary.get("lr") or 0), r.summary.get("seed", 0), str(r.path)))
    if not runs:
        raise ContinualError(f"no completed run directory (summary.json with status 'completed') under "
                             f"{', '.join(map(str, paths))}; run `continual run --out DIR` first")
    return runs


def load_run(path: str | os.PathLike) -> Run:
    return Run.load(path)


# ------------------------------------------------------------------------------------------------ intervals

def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution (scipy.stats.t)."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"need 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    from scipy.stats import t
    return float(t.ppf(p, df))


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float, int]:
    """(mean, half-width of the Student-t interval, n) over the finite values; half-width NaN for n < 2."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return float("nan"), float("nan"), 0
    if n == 1:
        return float(x[0]), float("nan"), 1
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return float(x.mean()), float(half), n


# ------------------------------------------------------------------------------------------------ the table

def learned(run: Run) -> float:
    """Mean over tasks of R[j, j] - b[j] (a pooled reference's one stage on every task: the final row minus the
    base)."""
    base = run.matrix.loc["base"]
    if run.stages == list(run.matrix.columns):
        return float(np.mean([run.matrix.loc[t, t] - base[t] for t in run.matrix.columns]))
    return float((run.matrix.loc[run.stages[-1]] - base).mean())


def run_metrics(run: Run, probe_columns) -> dict:
    """One run's row: every table metric (plus acc_<split> for the other splits)."""
    s = run.summary
    row = {"acc": s["acc"], **scale_accs(run), "learned": learned(run), "bwt": s["bwt"], "fwt": s["fwt"],
           "forgetting": s["forgetting"],
           **{c: s["probe"].get(c) for c in probe_columns}, "trainable": s["trainable_parameters"],
           "wall_s": s["wall_time_s"], "memory_mb": s["peak_memory_mb"]}
    for split, matrix in run.splits.items():
        row[f"acc_{split}"] = float(matrix.loc[run.stages[-1]].mean())
    return row


def base_metrics(run: Run, probe_columns) -> dict:
    """The base model's row from a run's base rows (no training: no transfer, nothing forgotten). Its ACC is in the
    label space of the final row it is compared with (all labels, in a class-incremental stream)."""
    base, b = run.probe.set_index("after").loc["base"], run.base_in_final_labels()
    row = {"acc": float(b.mean()), **scale_accs(run, b),
           "learned": 0.0, "bwt": None, "fwt": None,
           "forgetting": None, **{c: base.get(c) for c in probe_columns}, "trainable": 0, "wall_s": None,
           "memory_mb": None}
    for split in run.splits:
        row[f"acc_{split}"] = float(run.base_in_final_labels(split).mean())
    return row


def task_set(run: Run) -> str:
    """The tasks a run trained, as a set: sorted names joined by commas (its order is a replicate, not a key)."""
    return ",".join(sorted(run.tasks))


def _keys(runs: list[Run]) -> list[dict]:
    """What makes each run's row: its config minus output/display options, the seed and the task order. A run's
    config holds every option of its strategy (defaults too); ``strategy_options`` keeps only those that differ
    between runs of the same strategy (a ratio of 0.5 vs 0.25), so rows of different strategies read cleanly."""
    keys = []
    for run in runs:
        key = {k: v for k, v in run.config.items() if k not in NOT_HASHED + REPLICATE_FIELDS + TASK_FIELDS}
        key["task_set"] = task_set(run)
        keys.append({k: format_lr(v) if k == "lr" else v for k, v in key.items()})
    options = [dict(k.get("strategy_options") or {}) for k in keys]
    for key, own in zip(keys, options):
        same = [o for k, o in zip(keys, options) if k["strategy"] == key["strategy"]]
        varying = [name for name in own if len({str(o.get(name)) for o in same}) > 1]
        key["strategy_options"] = ", ".join(f"{name}={own[name]}" for name in sorted(varying))
    return [{k: str(v) for k, v in key.items()} for key in keys]


def format_lr(lr) -> str:
    return np.format_float_scientific(float(lr), trim="-", exp_digits=2)  # 1e-04, 1.5e-04


def group_labels(runs: list[Run]) -> list[str]:
    """Each run's row label: its strategy, plus the settings that differ between the runs (e.g. lr=1e-04)."""
    keys = _keys(runs)
    varying = [k for k in keys[0] if k not in ("strategy", "strategy_options") and len({d.get(k) for d in keys}) > 1]
    return [" ".join([d["strategy"]] + [f"{k}={d.get(k)}" for k in varying] + [d["strategy_options"]]).strip()
            for d in keys]


def _strategy_rank(name: str, reference: bool = False, recorded: int | None = None) -> tuple:
    """Rows in the registry's order. Reading runs needs no registry: each run records its strategy's place in it
    (summary.json's strategy_rank, written by the runner); a process that has loaded the registry (and may have
    registered strategies of its own) is ordered by it. Unranked names (combinations) follow, by name."""
    if name == BASE_LABEL:
        return (0, 0, name)
    if reference:  # a reference point (one pooled stage) goes last, after every continual strategy
        return (3, 0, name)
    registry = getattr(sys.modules.get("strategies"), "STRATEGIES", None)
    if registry is not None and name in registry:
        return (1, registry.names().index(name), name)
    return (1, recorded, name) if isinstance(recorded, int) else (2, 0, name)


def compare_table(runs_or_paths) -> pd.DataFrame:
    """One row per (strategy, learning rate, other settings) group over seeds and task orders.

    Columns: the settings that differ between groups (always ``strategy``), ``n`` (runs), and for every metric its
    mean, ``<metric>_ci95`` (the Student-t 95% half-width; NaN with one run) and ``<metric>_n`` (the runs where it
    is defined: the mean's n). A ``base`` row comes first.
    """
    runs = runs_or_paths if runs_or_paths and isinstance(runs_or_paths[0], Run) else find_runs(runs_or_paths)
    notes = metric_notes(runs)
    probes = list(probe_metrics(runs))
    records = [{**key, **run_metrics(r, probes)} for key, r in zip(_keys(runs), runs)]
    references = {r.summary["strategy"] for r in runs if r.summary.get("reference")}
    bases = {}
    # one base row per distinct (base settings, task set, seed): every strategy of a seed shares it. A run that
    # scored its base over every label (class-incremental, FINAL_LABELS) gives it before one written without
    for r in sorted(runs, key=lambda r: FINAL_LABELS not in r.scores):
        ident = tuple(str(r.config.get(k)) for k in BASE_FIELDS + ("seed",)) + (task_set(r),)
        bases.setdefault(ident, {**{k: str(r.config.get(k)) for k in BASE_FIELDS}, "task_set": task_set(r),
                                 "strategy": BASE_LABEL, **base_metrics(r, probes)})
    frame = pd.DataFrame(list(bases.values()) + records)
    metric_cols = [c for c in frame.columns if c in notes or c.startswith("acc_")]
    ordered = [m for m in notes if m in metric_cols] + sorted(c for c in metric_cols if c.startswith("acc_"))
    key_cols = [c for c in frame.columns if c not in metric_cols]
    frame[key_cols] = frame[key_cols].astype(object).where(frame[key_cols].notna(), "")  # base: no lr, steps...
    rows = []
    for key, group in frame.groupby(key_cols, sort=False):
        row = dict(zip(key_cols, key))
        row["n"] = len(group)
        for m in ordered:
            mean, half, n = mean_interval(group[m].tolist())
            row[m], row[f"{m}_ci95"], row[f"{m}_n"] = mean, half, n
        rows.append(row)
    table = pd.DataFrame(rows)
    trained = table[table["strategy"] != BASE_LABEL]
    shown = ["strategy"] + [c for c in key_cols if c != "strategy" and trained[c].nunique() > 1]
    if table.loc[table["strategy"] == BASE_LABEL, "model"].nunique() > 1 and "model" not in shown:
        shown.append("model")
    recorded = {r.summary.get("strategy"): r.summary.get("strategy_rank") for r in runs}
    table["_rank"] = [_strategy_rank(s, s in references, recorded.get(s)) for s in table["strategy"]]
    table["_lr"] = pd.to_numeric(table["lr"], errors="coerce").fillna(0.0)
    table = table.sort_values(["_rank", "_lr"], kind="stable")
    table = table[shown + ["n"] + [c for m in ordered for c in (m, f"{m}_ci95", f"{m}_n")]].reset_index(drop=True)
    table.attrs["constant"] = {c: trained[c].iloc[0] for c in key_cols
                               if c not in shown and len(trained) and trained[c].nunique() == 1 and trained[c].iloc[0]}
    table.attrs["metrics"] = {m: notes[m] for m in ordered if m in notes}
    table.attrs["examples"] = examples_per_cell(runs)
    return table


def examples_per_cell(runs: list[Run]) -> tuple[int, int] | None:
    """(fewest, most) examples one matrix cell is a mean over, across these runs' tasks (scores.csv's n)."""
    counts = []
    for r in runs:
        if "n" in r.scores:
            split = r.matrix_split
            counts += [int(n) for t, s, n in zip(r.scores["task"], r.scores["split"], r.scores["n"])
                       if split.get(t) == s]
    return (min(counts), max(counts)) if counts else None


def _numeric_lrs(rows: pd.DataFrame) -> pd.Series:
    # no lr column: every run shares one learning rate (compare_table shows only the settings that differ)
    return pd.to_numeric(rows["lr"], errors="coerce") if "lr" in rows else pd.Series(0.0, index=rows.index)


def _one_row_per_strategy(table: pd.DataFrame, best_of, selection: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """The base rows and, per strategy, the row ``best_of(strategy, its rows)`` names (None: the strategy is left
    out); the table's notes say how the rows were chosen. Returns (table, {strategy: chosen lr})."""
    keep, chosen = table["strategy"] == BASE_LABEL, {}
    for strategy in dict.fromkeys(table.loc[~keep, "strategy"]):
        best = best_of(strategy, table[table["strategy"] == strategy])
        if best is None:
            continue
        keep |= table.index == best
        chosen[strategy] = str(table.loc[best, "lr"]) if "lr" in table else ""
    picked = table[keep].reset_index(drop=True)
    picked.attrs = {**table.attrs, "selection": selection}
    return picked, chosen


def select_on(table: pd.DataFrame, metric: str = "acc_validation") -> tuple[pd.DataFrame, dict[str, str]]:
    """The table with, per strategy, only the learning rate whose mean ``metric`` is highest (ties: the lower
    learning rate), and the base rows: a sweep's choice made on the validation split, every other column still the
    test split's. Returns (table, {strategy: chosen lr})."""
    if metric not in table.columns:
        raise ContinualError(f"no '{metric}' column to choose on: run with --validation-size N (a validation split "
                             "held out of each task's training data)")

    def best_of(strategy, rows):
        return rows.assign(_lr=_numeric_lrs(rows)).sort_values([metric, "_lr"], ascending=[False, True],
                                                               kind="stable").index[0]
    return _one_row_per_strategy(table, best_of, f"Rows: per strategy the learning rate with the highest mean "
                                 f"{metric} (chosen on the validation split); every other column is scored on the "
                                 "test split.")


def matched_on(table: pd.DataFrame, reference: str, reference_lr: str,
               metric: str = "learned") -> tuple[pd.DataFrame, dict[str, str], float]:
    """The table with, per strategy, only the learning rate whose mean ``metric`` (by default ``learned``: how much
    each stage learned its own task) is nearest the reference strategy's at ``reference_lr`` (ties: the lower
    learning rate), and the base rows: forgetting compared at matched learning rather than at each strategy's own
    default, where a strategy that learns less also has less to forget. Returns (table, {strategy: chosen lr},
    the reference's value)."""
    trained = table[table["strategy"] != BASE_LABEL]
    lr_of = trained["lr"].astype(str) if "lr" in trained else pd.Series(reference_lr, index=trained.index)
    ref = trained[(trained["strategy"] == reference) & (lr_of == reference_lr)]
    if ref.empty:
        have = ", ".join(f"{s} lr {lr}" for s, lr in zip(trained["strategy"], lr_of))
        raise ContinualError(f"no '{reference}' row at lr {reference_lr} to match learning to (the table has: "
                             f"{have}); run it, or match to another strategy")
    target = float(ref[metric].iloc[0]) if metric in ref else float("nan")
    if not np.isfinite(target):
        raise ContinualError(f"'{reference}' at lr {reference_lr} has no {metric} to match to")

    def best_of(strategy, rows):
        if strategy == reference:
            return ref.index[0]
        rows = rows[np.isfinite(pd.to_numeric(rows[metric], errors="coerce"))]
        if rows.empty:
            return None  # undefined in every run of it: nothing to match on
        gap = (rows[metric] - target).abs().round(9)  # 0.45 and 0.35 are equally far from 0.40
        return rows.assign(_gap=gap, _lr=_numeric_lrs(rows)).sort_values(["_gap", "_lr"], kind="stable").index[0]
    picked, chosen = _one_row_per_strategy(
        table, best_of, f"Rows: per strategy the learning rate whose mean {metric} is nearest {reference}'s at lr "
        f"{reference_lr} ({target:+.3f}): strategies compared at matched learning; every learning rate run is in "
        "comparison.md.")
    return picked, chosen, target


# ------------------------------------------------------------------------------------------------ formatting

_FORMATS = {"trainable": lambda v: f"{v / 1e6:.1f}M" if v >= 1e5 else f"{v:,.0f}", "wall_s": "{:.0f}".format,
            "memory_mb": "{:.0f}".format}
_SIGNED = ("bwt", "fwt", "learned")


def _cell(metric: str, mean: float, half: float, minus: str = "−", pm: str = " ± ", digits: int = 3) -> str:
    if mean is None or not np.isfinite(mean):
        return "n/a"
    fmt = _FORMATS.get(metric, f"{{:+.{digits}f}}".format if metric in _SIGNED else f"{{:.{digits}f}}".format)
    text = fmt(mean).replace("-", minus)
    if np.isfinite(half):
        text += pm + fmt(half).lstrip("+")
    return text


def formatted(table: pd.DataFrame, minus: str = "−", pm: str = " ± ") -> pd.DataFrame:
    """Display form: one column per metric holding 'mean ± half-width' (or just the mean with one run)."""
    metrics = [c for c in table.columns if f"{c}_ci95" in table.columns]
    counts = {f"{m}_n" for m in metrics}
    keys = [c for c in table.columns if c not in metrics and not c.endswith("_ci95") and c not in counts]
    out = table[keys].copy()
    for m in metrics:
        digits = table.attrs.get("metrics", {}).get(m, ("", None, 3))[2]
        cells = [_cell(m, v, h, minus, pm, digits) for v, h in zip(table[m], table[f"{m}_ci95"])]
        if f"{m}_n" in table.columns:  # a metric defined in fewer runs than the row holds says so
            cells = [c + f" (n={int(k)})" if 0 < k < n else c for c, k, n in zip(cells, table[f"{m}_n"], table["n"])]
        out[m] = cells
    return out


def conventions_text(table: pd.DataFrame) -> list[str]:
    lines = ["R[i,j] = score on task j after stage i; b[j] = the base model's score; the base row is the model "
             "before any stage.",
             "Cells: mean over the n runs (seeds x task orders) ± half-width of the Student-t 95% interval "
             "(t_{0.975,n-1}·s/√n); no interval when n = 1. n is the row's runs; a cell marked (n=k) is defined in "
             "only k of them, and its mean and interval are over those k. Rows pool only task orders of one task set "
             "(task_set). n/a: undefined (a reference has one stage; base was not trained)."]
    if table.attrs.get("selection"):
        lines.append(table.attrs["selection"])
    examples = table.attrs.get("examples")
    if examples:
        fewest, most = examples
        lines.append(f"Each run's matrix cell is a mean over {fewest if fewest == most else f'{fewest}-{most}'} "
                     "evaluation examples of its task (scores.csv n; its own standard error is in "
                     "matrix_stderr.csv); the intervals above are over runs, not examples.")
    metrics = table.attrs.get("metrics", {})
    for m in table.columns:
        if m in metrics:
            lines.append(f"{m}: {metrics[m][0]}")
        elif m.startswith("acc_") and not m.endswith("_ci95") and not (m.endswith("_n") and m[:-2] in table):
            # (acc_n, acc_heldout_n: how many runs a mean is over, not a split's ACC)
            lines.append(f"{m}: mean over tasks of the final row of matrix_{m[4:]}.csv")
    constant = table.attrs.get("constant", {})
    if constant:
        lines.append("Same for every row: " + ", ".join(f"{k}={v}" for k, v in constant.items()))
    return lines


def to_markdown(table: pd.DataFrame) -> str:
    shown = formatted(table)
    head = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in shown.itertuples(index=False))
    notes = "".join(f"- {line}\n" for line in conventions_text(table))
    return head + body + "\n" + notes


def to_latex(table: pd.DataFrame) -> str:
    shown = formatted(table, minus="$-$", pm=" $\\pm$ ")
    shown.columns = [c.replace("_", r"\_") for c in shown.columns]
    notes = "".join(f"% {line}\n" for line in conventions_text(table))
    for col in shown.columns:
        if shown[col].dtype == object:
            shown[col] = [v.replace("_", r"\_") if "$" not in v else v for v in shown[col].astype(str)]
    body = shown.to_latex(index=False, escape=False, column_format="l" * len(shown.columns))
    return notes + body


def write_tables(table: pd.DataFrame, out: str | os.PathLike, stem: str = "comparison") -> list[Path]:
    """comparison.md, .csv (numbers at full precision: mean and ci95 per metric) and .tex, each written atomically."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContinualError(f"cannot create {out}: {exc.strerror}; choose another --out") from None
    paths = [out / f"{stem}.md", out / f"{stem}.csv", out / f"{stem}.tex"]
    write_atomic(paths[0], to_markdown(table))
    write_atomic(paths[1], table.to_csv(index=False))
    write_atomic(paths[2], to_latex(table))
    return paths


def parse_match_to(text: str) -> tuple[str, str]:
    """``STRATEGY@LR`` (a strategy's name, ``@``, a learning rate such as ``3e-05``) -> (strategy, the lr as the
    table's lr column spells it)."""
    strategy, sep, lr = text.partition("@")
    try:
        if not (sep and strategy.strip()):
            raise ValueError
        return strategy.strip(), format_lr(lr)
    except ValueError:
        raise ContinualError(f"--match-to {text!r}: give STRATEGY@LR, a strategy's name and a learning rate "
                             "such as 1e-04") from None


def write_matched(matched: pd.DataFrame, chosen: dict[str, str], target: float, reference: str,
                  out: str | os.PathLike) -> list[Path]:
    """matched.md/.csv/.tex (``matched_on``'s table) and the printed line naming each strategy's chosen learning
    rate; ``reference`` names the row matched to, as the user gave it."""
    written = write_tables(matched, out, stem="matched")
    print(f"\nlearning rates matching {reference}'s learned ({target:+.3f}; matched.md): "
          + ", ".join(f"{s} {lr}" for s, lr in chosen.items()))
    return written


def cmd_compare(paths: list[str], out: str | None, match_to: str | None = None) -> list[Path]:
    """`continual compare DIR...`: print the table and write it next to the runs (or into --out); with
    ``--match-to STRATEGY@LR`` also matched.md/.csv/.tex, each strategy at the learning rate whose ``learned`` is
    nearest that row's (a sweep re-anchored on any reference learning rate, not only the default)."""
    table = compare_table(paths)
    matched = None
    if match_to:  # resolved before anything is written: a bad reference leaves the folder as it was
        matched, chosen, target = matched_on(table, *parse_match_to(match_to))
    written = write_tables(table, out or paths[0])
    print(to_markdown(table))
    if matched is not None:
        written += write_matched(matched, chosen, target, match_to, out or paths[0])
        print(to_markdown(matched))
    print("written: " + ", ".join(map(str, written)))
    return written
