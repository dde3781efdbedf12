"""Strategy x metric comparison tables over any number of run directories, with Student-t 95% intervals.

    runs = find_runs(["results/facts"])           # run directories, or folders holding them
    table = compare_table(runs)                    # pandas DataFrame: one row per group, mean and CI per metric
    write_tables(table, "results/facts")           # comparison.md, comparison.csv, comparison.tex

Runs are grouped by everything in their config except the seed and the task order, so several seeds (and task
orders) of one strategy at one learning rate form one row: the mean, the half-width of the Student-t 95% interval
(t_{0.975, n-1} * s / sqrt(n), s the sample standard deviation; none for one run) and n. A ``base`` row holds the
model before any training, read from the runs' base rows (one per distinct seed).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from continual.config import NOT_HASHED
from continual.errors import ContinualError
from continual.metrics import CONVENTIONS
from continual.results import write_atomic

# Table columns, in order, with what each holds. The matrix metrics' conventions come from continual.metrics.
METRICS = {
    "acc": CONVENTIONS["acc"],
    "learned": "mean over tasks of R[j,j] - b[j]: how much each stage learned its own task (joint: final row - b)",
    "bwt": CONVENTIONS["bwt"],
    "fwt": CONVENTIONS["fwt"],
    "forgetting": CONVENTIONS["forgetting"],
    "retention": CONVENTIONS["retention"],
    "cloze": "knowledge cloze accuracy of the final model (retention probe)",
    "ppl_ratio": "perplexity on held-out general text, final model / base model",
    "kl": "mean per-token KL(base || final model) on held-out general text",
    "trainable": "trainable parameters",
    "wall_s": "wall time of the whole run, seconds",
    "memory_mb": "peak memory, MB (CUDA: max allocated; CPU: process peak RSS)",
}
# Fields of a run's config that do not make it a different experiment: replicates of one row.
REPLICATE_FIELDS = ("seed", "tasks", "order")
# Fields that decide the base model's scores (the base row is shared by every strategy trained from it).
BASE_FIELDS = ("stream", "source", "model", "camp_size", "chat_template", "eval_cap", "probe_text", "probe_tokens",
               "kl_tokens")
BASE_LABEL = "base"


@dataclass
class Run:
    """A completed run directory, read back."""
    path: Path
    config: dict  # config.yaml's "config": the resolved RunConfig
    summary: dict
    matrix: pd.DataFrame  # row "base" first, then one row per stage
    splits: dict[str, pd.DataFrame]  # the other evaluation splits' matrices (facts: reversed, heldout)
    probe: pd.DataFrame

    @property
    def default_order(self) -> bool:
        return not self.config.get("tasks")

    @property
    def stages(self) -> list[str]:
        return [r for r in self.matrix.index if r != "base"]


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
        run = load_run(d)
        (runs if run.summary.get("status") == "completed" or include_incomplete else skipped).append(run)
    for run in skipped:
        print(f"continual: skipping {run.path}: status '{run.summary.get('status')}' (re-run it to finish)",
              file=sys.stderr)
    runs.sort(key=lambda r: (_strategy_rank(r.summary.get("strategy", "")), float(r.summary.get("lr") or 0),
                             r.summary.get("seed", 0), str(r.path)))
    if not runs:
        raise ContinualError(f"no completed run directory (summary.json with status 'completed') under "
                             f"{', '.join(map(str, paths))}; run `continual run --out DIR` first")
    return runs


def load_run(path: str | os.PathLike) -> Run:
    path = Path(path)
    try:
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))["config"]
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        matrix = pd.read_csv(path / "matrix.csv", index_col="after", float_precision="round_trip")
        splits = {f.stem.removeprefix("matrix_"): pd.read_csv(f, index_col="after", float_precision="round_trip")
                  for f in sorted(path.glob("matrix_*.csv"))}
        probe = pd.read_csv(path / "probe.csv", float_precision="round_trip")
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ContinualError(f"{path} is not a readable run directory ({type(exc).__name__}: {exc}); "
                             "re-run it or leave it out") from None
    return Run(path, config, summary, matrix, splits, probe)


# ------------------------------------------------------------------------------------------------ intervals

def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution (p in (0.5, 1)), from the regularized incomplete beta function.

    For t > 0, P(T <= t) = 1 - I_x(df/2, 1/2) / 2 with x = df / (df + t^2); solved for t by bisection.
    """
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"need 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    return _t_quantile(float(p), int(df))


@lru_cache(maxsize=None)
def _t_quantile(p: float, df: int) -> float:
    import mpmath  # pure Python, installed with torch (through sympy); exact enough for a table

    def upper_tail(t):  # P(T > t)
        return float(mpmath.betainc(df / 2, 0.5, 0, df / (df + t * t), regularized=True)) / 2

    lo, hi = 0.0, 1.0
    while upper_tail(hi) > 1 - p:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if upper_tail(mid) > 1 - p else (lo, mid)
    return (lo + hi) / 2


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
    """Mean over tasks of R[j, j] - b[j] (for joint, one stage on every task: the final row minus the base)."""
    base = run.matrix.loc["base"]
    if run.stages == list(run.matrix.columns):
        return float(np.mean([run.matrix.loc[t, t] - base[t] for t in run.matrix.columns]))
    return float((run.matrix.loc[run.stages[-1]] - base).mean())


def run_metrics(run: Run) -> dict:
    """One run's row: every table metric, keyed as in METRICS (plus acc_<split> for the other splits)."""
    s = run.summary
    row = {"acc": s["acc"], "learned": learned(run), "bwt": s["bwt"], "fwt": s["fwt"],
           "forgetting": s["forgetting"], "retention": s["retention"], "cloze": s["probe"]["cloze"],
           "ppl_ratio": s["probe"]["ppl_ratio"], "kl": s["probe"]["kl"], "trainable": s["trainable_parameters"],
           "wall_s": s["wall_time_s"], "memory_mb": s["peak_memory_mb"]}
    for split, matrix in run.splits.items():
        row[f"acc_{split}"] = float(matrix.loc[run.stages[-1]].mean())
    return row


def base_metrics(run: Run) -> dict:
    """The base model's row from a run's base rows (no training: no transfer, nothing forgotten)."""
    base = run.probe.set_index("after").loc["base"]
    row = {"acc": float(run.matrix.loc["base"].mean()), "learned": 0.0, "bwt": None, "fwt": None,
           "forgetting": None, "retention": base.get("retention"), "cloze": base["cloze"],
           "ppl_ratio": base["ppl_ratio"], "kl": base["kl"], "trainable": 0, "wall_s": None, "memory_mb": None}
    for split, matrix in run.splits.items():
        row[f"acc_{split}"] = float(matrix.loc["base"].mean())
    return row


def _key(run: Run) -> dict:
    """What makes a row: the config minus output/display options, the seed and the task order."""
    key = {k: v for k, v in run.config.items() if k not in NOT_HASHED + REPLICATE_FIELDS}
    key["strategy_options"] = ", ".join(f"{k}={v}" for k, v in sorted(key.get("strategy_options", {}).items()))
    return {k: format_lr(v) if k == "lr" else str(v) for k, v in key.items()}


def format_lr(lr) -> str:
    return np.format_float_scientific(float(lr), trim="-", exp_digits=2)  # 1e-04, 1.5e-04


def group_labels(runs: list[Run]) -> list[str]:
    """Each run's row label: its strategy, plus the settings that differ between the runs (e.g. lr=1e-04)."""
    keys = [_key(r) for r in runs]
    varying = [k for k in keys[0] if k != "strategy" and len({d.get(k) for d in keys}) > 1]
    return [" ".join([d["strategy"]] + [f"{k}={d.get(k)}" for k in varying]) for d in keys]


def _strategy_rank(name: str) -> tuple:
    from strategies import STRATEGIES
    order = list(STRATEGIES)
    if name == BASE_LABEL:
        return (0, 0, name)
    if name == "joint":  # the reference goes last, after every continual strategy
        return (3, 0, name)
    return (1, order.index(name), name) if name in order else (2, 0, name)


def compare_table(runs_or_paths) -> pd.DataFrame:
    """One row per (strategy, learning rate, other settings) group over seeds and task orders.

    Columns: the settings that differ between groups (always ``strategy``), ``n`` (runs), and for every metric its
    mean and ``<metric>_ci95`` (the Student-t 95% half-width; NaN with one run). A ``base`` row comes first.
    """
    runs = runs_or_paths if runs_or_paths and isinstance(runs_or_paths[0], Run) else find_runs(runs_or_paths)
    records = [{**_key(r), **run_metrics(r)} for r in runs]
    bases = {}
    for r in runs:  # one base row per distinct (base settings, seed): every strategy of a seed shares it
        ident = tuple(str(r.config.get(k)) for k in BASE_FIELDS + ("seed",))
        bases.setdefault(ident, {**{k: str(r.config.get(k)) for k in BASE_FIELDS}, "strategy": BASE_LABEL,
                                 **base_metrics(r)})
    frame = pd.DataFrame(list(bases.values()) + records)
    metric_cols = [c for c in frame.columns if c in METRICS or c.startswith("acc_")]
    ordered = [m for m in METRICS if m in metric_cols] + sorted(c for c in metric_cols if c.startswith("acc_"))
    key_cols = [c for c in frame.columns if c not in metric_cols]
    frame[key_cols] = frame[key_cols].astype(object).where(frame[key_cols].notna(), "")  # base: no lr, steps...
    rows = []
    for key, group in frame.groupby(key_cols, sort=False):
        row = dict(zip(key_cols, key))
        row["n"] = len(group)
        for m in ordered:
            mean, half, _ = mean_interval(group[m].tolist())
            row[m], row[f"{m}_ci95"] = mean, half
        rows.append(row)
    table = pd.DataFrame(rows)
    trained = table[table["strategy"] != BASE_LABEL]
    shown = ["strategy"] + [c for c in key_cols if c != "strategy" and trained[c].nunique() > 1]
    if table.loc[table["strategy"] == BASE_LABEL, "model"].nunique() > 1 and "model" not in shown:
        shown.append("model")
    table["_rank"] = [_strategy_rank(s) for s in table["strategy"]]
    table["_lr"] = pd.to_numeric(table["lr"], errors="coerce").fillna(0.0)
    table = table.sort_values(["_rank", "_lr"], kind="stable")
    table = table[shown + ["n"] + [c for m in ordered for c in (m, f"{m}_ci95")]].reset_index(drop=True)
    table.attrs["constant"] = {c: trained[c].iloc[0] for c in key_cols
                               if c not in shown and len(trained) and trained[c].nunique() == 1 and trained[c].iloc[0]}
    return table


# ------------------------------------------------------------------------------------------------ formatting

_FORMATS = {"trainable": lambda v: f"{v / 1e6:.1f}M" if v >= 1e5 else f"{v:,.0f}", "wall_s": "{:.0f}".format,
            "memory_mb": "{:.0f}".format, "ppl_ratio": "{:.2f}".format, "kl": "{:.3f}".format}
_SIGNED = ("bwt", "fwt", "learned")


def _cell(metric: str, mean: float, half: float, minus: str = "−", pm: str = " ± ") -> str:
    if mean is None or not np.isfinite(mean):
        return "n/a"
    fmt = _FORMATS.get(metric, "{:+.3f}".format if metric in _SIGNED else "{:.3f}".format)
    text = fmt(mean).replace("-", minus)
    if np.isfinite(half):
        text += pm + fmt(half).lstrip("+")
    return text


def formatted(table: pd.DataFrame, minus: str = "−", pm: str = " ± ") -> pd.DataFrame:
    """Display form: one column per metric holding 'mean ± half-width' (or just the mean with one run)."""
    metrics = [c for c in table.columns if f"{c}_ci95" in table.columns]
    keys = [c for c in table.columns if c not in metrics and not c.endswith("_ci95")]
    out = table[keys].copy()
    for m in metrics:
        out[m] = [_cell(m, v, h, minus, pm) for v, h in zip(table[m], table[f"{m}_ci95"])]
    return out


def conventions_text(table: pd.DataFrame) -> list[str]:
    lines = ["R[i,j] = score on task j after stage i; b[j] = the base model's score; the base row is the model "
             "before any stage.",
             "Cells: mean over the n runs (seeds x task orders) ± half-width of the Student-t 95% interval "
             "(t_{0.975,n-1}·s/√n); no interval when n = 1. n/a: undefined (joint has one stage; base was not "
             "trained)."]
    for m in table.columns:
        if m in METRICS:
            lines.append(f"{m}: {METRICS[m]}")
        elif m.startswith("acc_") and not m.endswith("_ci95"):
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


def cmd_compare(paths: list[str], out: str | None) -> list[Path]:
    """`continual compare DIR...`: print the table and write it next to the runs (or into --out)."""
    table = compare_table(paths)
    written = write_tables(table, out or paths[0])
    print(to_markdown(table))
    print("written: " + ", ".join(map(str, written)))
    return written
