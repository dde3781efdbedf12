"""Forgetting plots (seaborn on matplotlib's Agg canvas), PNG + SVG, from run directories.

  matrix               accuracy-matrix heatmap (rows: base then after each stage; columns: tasks), one panel per
                       evaluation split; one file per strategy group when several are given
  forgetting_curves    score on every task across stages (the classic forgetting curve), one panel per group
  probe                every headline probe column across stages (as the probes declare them), one line per group
  learning_vs_forgetting  x = how much was learned (mean R[j,j] - b[j]), y = each primary probe column (a kept
                       capability) and -BWT: one point per strategy and learning rate, Student-t 95%
                       intervals when a point has >= 2 runs
  <stream plots>       what a stream registers (facts: the relation graph of what the final model believes)

Figures are built on ``matplotlib.figure.Figure`` (no pyplot, no global backend switch) and every file is written
to a temporary name and renamed. Several seeds (or task orders) of one group are averaged; bands and error bars are
Student-t 95% intervals (continual.compare.mean_interval).
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from continual.compare import BASE_LABEL, compare_table, find_runs, group_labels, mean_interval, probe_metrics
from continual.errors import ContinualError
from continual.results import Run, write_atomic

log = logging.getLogger(__name__)
sns.set_theme(style="whitegrid", context="notebook")


# ------------------------------------------------------------------------------------------------ files

def save(fig: Figure, out: Path, name: str) -> list[Path]:
    """name.png (150 dpi) and name.svg, atomically."""
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    fig.savefig(svg, format="svg", bbox_inches="tight")
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    write_atomic(paths[0], png.getvalue())
    write_atomic(paths[1], svg.getvalue())
    return paths


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "run"


# ------------------------------------------------------------------------------------------------ data

def _positions(run: Run) -> dict[str, int]:
    """x position of each matrix row: base 0, stage i at i+1; a pooled reference's single stage sits at the end
    (T)."""
    stages = run.stages
    if stages == list(run.matrix.columns) or len(stages) != 1:
        return {"base": 0, **{s: i + 1 for i, s in enumerate(stages)}}
    return {"base": 0, stages[0]: len(run.matrix.columns)}


def stage_scores(runs: list[Run], labels: list[str]) -> pd.DataFrame:
    """Long form: group, seed, position, after, task, score (matrix split)."""
    rows = []
    for run, label in zip(runs, labels):
        pos = _positions(run)
        for after, row in run.matrix.iterrows():
            for task, score in row.items():
                rows.append({"group": label, "seed": run.summary["seed"], "position": pos[after], "after": after,
                             "task": task, "score": score})
    return pd.DataFrame(rows)


def stage_probes(runs: list[Run], labels: list[str], columns: list[str]) -> pd.DataFrame:
    rows = []
    for run, label in zip(runs, labels):
        pos = _positions(run)
        for rec in run.probe.to_dict("records"):
            rows.append({"group": label, "position": pos[rec["after"]], "after": rec["after"],
                         **{k: rec.get(k, np.nan) for k in columns}})
    return pd.DataFrame(rows)


def _t_band(values):
    mean, half, _ = mean_interval(list(values))
    half = 0.0 if not np.isfinite(half) else half
    return mean - half, mean + half


def _stage_ticks(ax, runs: list[Run]) -> None:
    """Name the x ticks after the stages when every run trained the same tasks in the same order."""
    T = max(len(r.matrix.columns) for r in runs)
    orders = {tuple(r.stages) for r in runs if len(r.stages) == T}
    ax.set_xticks(range(T + 1))
    if len(orders) == 1:
        ax.set_xticklabels(["base"] + list(next(iter(orders))), rotation=20, ha="right")
    elif not orders:  # a pooled reference: one stage on every task, drawn at the end
        ax.set_xticklabels(["base"] + [""] * (T - 1) + [runs[0].stages[-1]])
    else:
        ax.set_xticklabels(["base"] + [f"stage {i}" for i in range(1, T + 1)])
    ax.set_xlabel("after")


# ------------------------------------------------------------------------------------------------ plots

def matrix_heatmap(runs: list[Run], title: str) -> Figure:
    """Mean accuracy matrix over the runs sharing the most common task order; one panel per evaluation split."""
    order = Counter(tuple(r.stages) for r in runs).most_common(1)[0][0]
    same = [r for r in runs if tuple(r.stages) == order]
    split_name = next(iter(same[0].summary.get("matrix_split", {}).values()), "matrix")
    panels = {split_name: [r.matrix for r in same]}
    for split in same[0].splits:
        panels[split] = [r.splits[split] for r in same if split in r.splits]
    fig = Figure(figsize=(1.2 + 3.2 * len(panels) + 0.6, 0.9 + 0.55 * (len(order) + 1)), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for k, (ax, (split, frames)) in enumerate(zip(axes, panels.items())):
        mean = sum(frames) / len(frames)
        sns.heatmap(mean, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f", cbar=k == len(panels) - 1,
                    annot_kws={"size": 8}, linewidths=0.5, linecolor="white")
        ax.set_title(split + (" (matrix)" if k == 0 else ""))
        ax.set_xlabel("task")
        ax.set_ylabel("after" if k == 0 else "")
        ax.tick_params(axis="x", rotation=20)
        ax.tick_params(axis="y", rotation=0)
    n = f"mean of {len(same)} runs" if len(same) > 1 else f"seed {same[0].summary['seed']}"
    fig.suptitle(f"accuracy matrix: {title} ({n})")
    return fig


def forgetting_curves(runs: list[Run], labels: list[str]) -> Figure:
    data = stage_scores(runs, labels)
    groups = list(dict.fromkeys(labels))
    cols = min(len(groups), 4)
    rows = -(-len(groups) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    tasks = list(dict.fromkeys(data["task"]))
    palette = dict(zip(tasks, sns.color_palette("tab10", len(tasks))))
    for ax, group in zip(axes, groups):
        part = data[data["group"] == group]
        several = part.groupby(["position", "task"]).size().max() > 1
        sns.lineplot(part, x="position", y="score", hue="task", hue_order=tasks, palette=palette, marker="o", ax=ax,
                     errorbar=_t_band if several else None, legend=ax is axes[0])
        ax.set_title(group)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("score (matrix split)")
        _stage_ticks(ax, [r for r, label in zip(runs, labels) if label == group])
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    fig.suptitle("score on every task after every stage")
    return fig


def probe_curves(runs: list[Run], labels: list[str]) -> Figure:
    """One panel per headline probe column, as the runs' probes declare them."""
    declared = probe_metrics(runs)
    data = stage_probes(runs, labels, list(declared))
    panels = [(k, c.get("label") or k) for k, c in declared.items() if data[k].notna().any()]
    if not panels:
        fig = Figure(figsize=(5, 2))
        fig.text(0.5, 0.5, "no probe column has a value for these runs", ha="center", va="center", color="gray")
        return fig
    fig = Figure(figsize=(4.2 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    groups = list(dict.fromkeys(labels))
    several = data.groupby(["group", "position"]).size().max() > 1
    palette = dict(zip(groups, sns.color_palette("tab10" if len(groups) <= 10 else "husl", len(groups))))
    for ax, (key, title) in zip(axes, panels):
        sns.lineplot(data, x="position", y=key, hue="group", hue_order=groups, marker="o", ax=ax, palette=palette,
                     errorbar=_t_band if several else None, legend=ax is axes[-1])
        ax.set_title(title)
        ax.set_ylabel("")
        _stage_ticks(ax, runs)
    if axes[-1].get_legend():
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), title=None, frameon=False)
    fig.suptitle("probes across stages")
    return fig


def learning_vs_forgetting(table: pd.DataFrame, primary: dict[str, dict]) -> Figure:
    """One point per row of the comparison table: learned against each primary probe column (a kept capability,
    as its probe declares it) and against -BWT."""
    rows = table[table["strategy"] != BASE_LABEL].copy()
    extra = [c for c in table.columns[:table.columns.get_loc("n")] if c not in ("strategy", "lr")]
    rows["series"] = [" ".join([r["strategy"]] + [f"{c}={r[c]}" for c in extra]) for _, r in rows.iterrows()]
    rows["lr_value"] = pd.to_numeric(rows["lr"], errors="coerce") if "lr" in rows else np.nan
    rows["-bwt"], rows["-bwt_ci95"] = -rows["bwt"], rows["bwt_ci95"]
    series = list(dict.fromkeys(rows["series"]))
    palette = dict(zip(series, sns.color_palette("tab10" if len(series) <= 10 else "husl", len(series))))
    panels = [(k, c.get("label") or k) for k, c in primary.items() if k in rows] + [
        ("-bwt", "forgetting of earlier tasks (−BWT)")]
    fig = Figure(figsize=(6.5 * len(panels), 4.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, ylabel) in zip(axes, panels):
        for name in series:
            part = rows[(rows["series"] == name) & rows[key].notna()].sort_values("lr_value")
            if part.empty:
                continue
            color = palette[name]
            ax.errorbar(part["learned"], part[key], xerr=part["learned_ci95"].fillna(0),
                        yerr=part[f"{key}_ci95"].fillna(0), fmt="o-" if len(part) > 1 else "o", color=color,
                        label=name, capsize=3, markersize=7, linewidth=1)
            if "lr" in rows and (len(part) > 1 or rows["lr"].nunique() > 1):
                for _, r in part.iterrows():
                    ax.annotate(f"{r['lr']}", (r["learned"], r[key]), textcoords="offset points", xytext=(5, 4),
                                fontsize=7, color=color)
        base = table.loc[table["strategy"] == BASE_LABEL, key] if key in table else pd.Series(dtype=float)
        if key in primary and base.notna().any():
            ax.scatter([0], [float(base.dropna().iloc[0])], marker="*", s=140, color="black",
                       label="base (no training)", zorder=3)
        if not rows[key].notna().any():
            ax.text(0.5, 0.5, f"{key.lstrip('-')} is undefined for these runs", transform=ax.transAxes,
                    ha="center", va="center", color="gray")
        ax.set_xlabel("learned: mean over tasks of R[j,j] − b[j]")
        ax.set_ylabel(ylabel)
    handles = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="outside right upper", frameon=False, fontsize=8)
    n = int(rows["n"].max()) if len(rows) else 0
    fig.suptitle("learning vs forgetting: compare strategies at matched learning" +
                 (" (bars: Student-t 95% intervals)" if n > 1 else " (one run per point: no intervals)"))
    return fig


# ------------------------------------------------------------------------------------------------ entry points

def write_plots(runs_or_paths, out: str | os.PathLike) -> list[Path]:
    """Every plot that applies to these runs, into ``out`` (created). Returns the files written."""
    runs = runs_or_paths if runs_or_paths and isinstance(runs_or_paths[0], Run) else find_runs(runs_or_paths)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContinualError(f"cannot create {out}: {exc.strerror}; choose another --out") from None
    labels = group_labels(runs)
    groups = list(dict.fromkeys(labels))
    single = len(groups) == 1
    written = []
    for group in groups:
        members = [r for r, label in zip(runs, labels) if label == group]
        written += _saved(matrix_heatmap(members, group), out, "matrix" if single else f"matrix-{slug(group)}")
        for plot in stream_plots(members[0].summary.get("stream", "")):
            with_predictions = [r for r in members if r.predictions is not None]
            if not with_predictions:
                continue
            run = min(with_predictions, key=lambda r: (not r.default_order, r.summary.get("seed", 0)))
            fig = plot(run)
            if fig is not None:
                name = plot.__name__
                written += _saved(fig, out, name if single else f"{name}-{slug(group)}")
    written += _saved(forgetting_curves(runs, labels), out, "forgetting_curves")
    written += _saved(probe_curves(runs, labels), out, "probe")
    table = compare_table(runs)
    primary = {k: c for k, c in probe_metrics(runs).items() if c.get("primary")}
    written += _saved(learning_vs_forgetting(table, primary), out, "learning_vs_forgetting")
    return written


def stream_plots(stream: str) -> list:
    """The plot functions a registered stream names (function(run) -> Figure or None)."""
    from continual.streams import STREAMS
    if stream not in STREAMS:
        return []
    functions = []
    for path in STREAMS.resolve(stream).value.plots:
        module, _, name = path.partition(":")
        functions.append(getattr(importlib.import_module(module), name))
    return functions


def _saved(fig: Figure, out: Path, name: str) -> list[Path]:
    try:
        return save(fig, out, name)
    finally:
        fig.clear()


def plot_run(run: Run | str | os.PathLike) -> list[Path]:
    """RUN/plots/ for one finished run; a plotting failure is reported, never raised (the results are written)."""
    path = run.path if isinstance(run, Run) else Path(run)
    try:
        return write_plots([run if isinstance(run, Run) else Run.load(path)], path / "plots")
    except Exception as exc:  # noqa: BLE001 - a plot must never cost a run its results
        log.warning("the plots of %s were not written (%s: %s); the results are complete; retry with "
                    "`continual plot %s`", path, type(exc).__name__, exc, path)
        return []


def cmd_plot(paths: list[str], out: str | None) -> list[Path]:
    runs = find_runs(paths)
    target = Path(out) if out else (runs[0].path / "plots" if len(runs) == 1 else Path(paths[0]) / "plots")
    written = write_plots(runs, target)
    print(f"{len(written)} files written to {target}: " + ", ".join(sorted({p.stem for p in written})))
    return written
