"""Forgetting plots (seaborn on matplotlib's Agg canvas), PNG + SVG, from run directories.

  matrix               accuracy-matrix heatmap (rows: base then after each stage; columns: tasks), one panel per
                       evaluation split in the stream's order, the chance level marked on the colour bar and each
                       task's own stage boxed; one file per strategy group when several are given
  forgetting_curves    accuracy on every task across stages (the classic forgetting curve), one panel per group; a
                       star marks each task right after its own stage, a dashed line the chance level
  probe                every headline probe column across stages (as the probes declare them), one line per group; a
                       column that is an exact affine function of another of the same probe (a retention against its base value) is
                       that panel's right-hand axis, not a panel of its own
  learning_vs_forgetting  x = how much was learned (mean R[j,j] - b[j]), y = each primary probe column (a kept
                       capability) and -BWT. One group: its trajectory stage by stage; several: one point per group
                       (strategy, learning rate), Student-t 95% intervals when a point has >= 2 runs
  loss_curves          the training loss of every step (losses.csv), stage after stage, one panel per group
  <stream plots>       what a stream registers (facts: the relation graph of what the final model believes)

Figures are built on ``matplotlib.figure.Figure`` (no pyplot, no global backend switch) in one style (``STYLE``:
8-point text on panels of 3.4 x 2.5 inches, a paper's column width, at most two panels a row) and every plot
function returns its Figure, so tests inspect what is drawn. Every file is written to a temporary name and renamed.
Several seeds (or task orders) of one group are averaged; bands and error bars are Student-t 95% intervals
(continual.compare.mean_interval).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import logging
import os
import re
import textwrap
from collections import Counter
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from continual.compare import BASE_LABEL, compare_table, find_runs, group_labels, mean_interval, probe_metrics
from continual.errors import ContinualError
from continual.results import Run, write_atomic

log = logging.getLogger(__name__)

# One style for every figure: seaborn's whitegrid at 8-point text, sized so that a panel is a column wide.
PANEL = (3.4, 2.5)  # inches per panel
MAX_COLUMNS = 2  # panels per row: a figure is at most a page's text width (two columns)
STYLE = {"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
         "legend.fontsize": 7, "legend.title_fontsize": 7.5, "figure.titlesize": 9.5, "lines.linewidth": 1.4,
         "lines.markersize": 4.5, "axes.titlepad": 4.0}
CHANCE_STYLE = dict(color="0.35", linestyle=(0, (4, 3)), linewidth=1.0, zorder=1)
SPLIT_NAMES = {"train": "trained examples", "reversed": "reversed pairs", "heldout": "held-out pairs",
               "test": "test examples", "validation": "validation examples"}


@contextlib.contextmanager
def figure_style():
    with sns.axes_style("whitegrid"), mpl.rc_context(STYLE):
        yield


def styled(function):
    """Draw ``function``'s figure in ``STYLE``."""
    @functools.wraps(function)
    def draw(*args, **kwargs):
        with figure_style():
            return function(*args, **kwargs)
    return draw


def _grid(n: int, sharex=False, sharey=False, extra_height: float = 0.5) -> tuple[Figure, list]:
    cols = min(n, MAX_COLUMNS)
    rows = -(-n // cols)
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows + extra_height), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False, sharex=sharex, sharey=sharey).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _wrap(text: str, width: int = 40) -> str:
    """Lines of at most ``width`` characters that break between words and parenthesised groups, never inside a
    group that fits on a line: "(1 = nothing lost)" reads as one qualifier, not "(1 =" over "nothing lost)"."""
    lines: list[str] = []
    for chunk in re.findall(r"\([^()]*\)|\S+", text):
        chunk = " ".join(chunk.split())
        if len(chunk) > width:  # a group longer than a line: wrap it as words, from where the last line ends
            lines[-1:] = textwrap.wrap(" ".join(lines[-1:] + [chunk]), width)
        elif lines and len(lines[-1]) + 1 + len(chunk) <= width:
            lines[-1] += " " + chunk
        else:
            lines.append(chunk)
    return "\n".join(lines) or text


def split_name(split: str) -> str:
    return SPLIT_NAMES.get(split, split)


# ------------------------------------------------------------------------------------------------ files

def save(fig: Figure, out: Path, name: str) -> list[Path]:
    """name.png (200 dpi) and name.svg, atomically."""
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", dpi=200, bbox_inches="tight")
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


def own_stage(run: Run) -> dict[str, int]:
    """The x position at which each task was trained (a pooled reference: every task at its one stage)."""
    pos = _positions(run)
    if run.stages == list(run.matrix.columns):
        return {t: pos[t] for t in run.matrix.columns}
    if len(run.stages) == 1:
        return {t: pos[run.stages[0]] for t in run.matrix.columns}
    return {t: pos[t] for t in run.matrix.columns if t in pos}


def stage_scores(runs: list[Run], labels: list[str]) -> pd.DataFrame:
    """Long form: group, seed, position, after, task, score (each task's matrix split)."""
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


def split_order(run: Run) -> list[str]:
    """The evaluation splits in the order the stream scores them (scores.csv's order: facts train, reversed,
    heldout), the matrix split(s) first."""
    order = list(dict.fromkeys(run.scores["split"])) if len(run.scores) else []
    main = [s for s in order if s in set(run.matrix_split.values())]
    return main + [s for s in order if s not in main]


def task_chance(runs: list[Run]) -> dict[str, float]:
    """Each choice task's chance level on its matrix split: 1 / number of candidate answers (scores.csv's
    n_labels), for tasks scored by accuracy; generation tasks have none."""
    chance: dict[str, float] = {}
    for run in runs:
        scores = run.scores
        if "n_labels" not in scores:
            continue
        for task, split in run.matrix_split.items():
            rows = scores[(scores["task"] == task) & (scores["split"] == split)]
            if "metric" in rows:
                rows = rows[rows["metric"].fillna("accuracy") == "accuracy"]
            labels = pd.to_numeric(rows["n_labels"], errors="coerce").dropna()
            if len(labels) and labels.nunique() == 1 and labels.iloc[0] >= 2:
                chance.setdefault(task, 1.0 / float(labels.iloc[0]))
    return chance


def matrix_label(runs: list[Run]) -> str:
    """What the matrix holds, for an axis: 'accuracy (trained examples)'."""
    splits = {s for r in runs for s in r.matrix_split.values()}
    return "accuracy" + (f" ({split_name(next(iter(splits)))})" if len(splits) == 1 else "")


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
        ax.set_xticklabels(["base"] + list(next(iter(orders))), rotation=25, ha="right")
    elif not orders:  # a pooled reference: one stage on every task, drawn at the end
        ax.set_xticklabels(["base"] + [""] * (T - 1) + [runs[0].stages[-1]], rotation=25, ha="right")
    else:
        ax.set_xticklabels(["base"] + [f"stage {i}" for i in range(1, T + 1)])
    ax.set_xlim(-0.25, T + 0.25)
    ax.set_xlabel("after training on")


def _chance_lines(ax, chances: dict[str, float]) -> None:
    for value in sorted(set(round(v, 6) for v in chances.values())):
        ax.axhline(value, label=f"chance ({value:.2f})", **CHANCE_STYLE)


def _figure_legend(fig: Figure, axes, ncol: int | None = None, notes: list[str] = (), **kwargs) -> None:
    """One legend for the figure, under the panels (never on the data or the title), each label once; ``notes``
    (what the figure leaves out, how to read it) in small print above its entries."""
    handles: dict = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                handles.setdefault(label, h)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if notes:
        kwargs["title"] = _wrap("; ".join(notes), 110)
    if handles or notes:
        legend = fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
                            frameon=False, ncol=ncol or max(1, min(len(handles), 4)), **kwargs)
        if notes:
            legend.get_title().set_fontsize(6.5)
            legend.get_title().set_color("0.3")


def _unit_limits(ax) -> None:
    ax.set_ylim(-0.02, 1.02)


# ------------------------------------------------------------------------------------------------ plots

@styled
def matrix_heatmap(runs: list[Run], title: str) -> Figure:
    """Mean accuracy matrix over the runs sharing the most common task order; one panel per evaluation split, in
    the stream's order; chance marked on the colour bar, each task's own stage boxed."""
    order = Counter(tuple(r.stages) for r in runs).most_common(1)[0][0]
    same = [r for r in runs if tuple(r.stages) == order]
    first = same[0]
    splits = split_order(first)
    main = set(first.matrix_split.values())
    panels = {(split_name(next(iter(main))) if len(main) == 1 else "each task's scored split"):
              [r.matrix for r in same]}
    for split in splits:
        if split not in main:
            panels[split_name(split)] = [r.split_matrix(split) for r in same]
    chances = set(round(v, 6) for v in task_chance(same).values())
    T = len(first.matrix.columns)
    width = min(7.0, 0.9 + (0.55 * T + 0.8) * len(panels) + 0.6)
    fig = Figure(figsize=(width, 1.0 + 0.42 * (len(order) + 1)), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    own = own_stage(first)
    rows = list(first.matrix.index)
    for k, (ax, (name, frames)) in enumerate(zip(axes, panels.items())):
        mean = sum(frames) / len(frames)
        last = k == len(panels) - 1
        sns.heatmap(mean, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f", cbar=last,
                    annot_kws={"size": 7}, linewidths=0.5, linecolor="white",
                    cbar_kws={"label": "accuracy", "shrink": 0.9} if last else None)
        for task, position in own.items():  # the cell right after the task's own stage
            column = list(mean.columns).index(task)
            row = rows.index(next(r for r in rows if _positions(first)[r] == position))
            ax.add_patch(mpl.patches.Rectangle((column + 0.04, row + 0.04), 0.92, 0.92, fill=False,
                                               edgecolor="#ff7f0e", linewidth=1.6, label="after its own stage"))
        ax.set_title(name)
        ax.set_xlabel("scored on task")
        ax.set_ylabel("after training on" if k == 0 else "")
        ax.tick_params(axis="x", rotation=25)
        ax.tick_params(axis="y", rotation=0)
        if last and chances:
            bar = ax.collections[0].colorbar
            for value in chances:
                bar.ax.axhline(value, color="white", linewidth=1.5, linestyle=(0, (3, 2)))
            bar.set_ticks(sorted({0.0, 0.5, 1.0} | chances))
            bar.set_ticklabels([f"chance {v:.2f}" if round(v, 6) in chances else f"{v:.1f}"
                                for v in sorted({0.0, 0.5, 1.0} | chances)])
    n = f"mean of {len(same)} runs" if len(same) > 1 else f"seed {first.summary['seed']}"
    fig.suptitle(f"accuracy matrix: {title} ({n})")
    _figure_legend(fig, [], notes=["orange box: right after the task's own stage"] +
                   (["chance level marked on the colour bar"] if chances else []))
    return fig


@styled
def forgetting_curves(runs: list[Run], labels: list[str]) -> Figure:
    """Accuracy on every task after every stage, one panel per group; a star at each task right after its own
    stage, the tasks' chance level dashed."""
    data = stage_scores(runs, labels)
    groups = list(dict.fromkeys(labels))
    fig, axes = _grid(len(groups), sharex=True, sharey=True, extra_height=0.7)
    tasks = list(dict.fromkeys(data["task"]))
    palette = dict(zip(tasks, sns.color_palette("tab10", len(tasks))))
    chances = task_chance(runs)
    for ax, group in zip(axes, groups):
        part = data[data["group"] == group]
        members = [r for r, label in zip(runs, labels) if label == group]
        several = part.groupby(["position", "task"]).size().max() > 1
        sns.lineplot(part, x="position", y="score", hue="task", hue_order=tasks, palette=palette, marker="o", ax=ax,
                     errorbar=_t_band if several else None, markeredgewidth=0)
        owns = [own_stage(r) for r in members]
        if all(o == owns[0] for o in owns):  # every run trained each task at the same stage
            for task, position in owns[0].items():
                y = part[(part["task"] == task) & (part["position"] == position)]["score"].mean()
                ax.plot([position], [y], marker="*", markersize=11, color=palette[task], markeredgecolor="black",
                        markeredgewidth=0.6, linestyle="none", zorder=4, label="right after its own stage")
        _chance_lines(ax, chances)
        ax.set_title(group)
        _unit_limits(ax)
        ax.set_ylabel(matrix_label(runs))
        _stage_ticks(ax, members)
    _figure_legend(fig, axes)
    fig.suptitle("accuracy on every task after every stage (a drop after a task's star is forgetting)")
    return fig


def affine_pairs(data: pd.DataFrame, declared: dict[str, dict]) -> dict[str, tuple[str, float, float]]:
    """Columns that are an exact affine function of another column of the same probe over every row where both
    are defined (a retention = (score - chance) / (score_base - chance)): {dependent: (column, slope,
    intercept)}, dependent = slope * column + intercept. Nothing is derived from fewer than three distinct values."""
    found: dict[str, tuple[str, float, float]] = {}
    keys = list(declared)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if declared[a].get("probe") != declared[b].get("probe") or a in found or b in found:
                continue
            both = data[[a, b]].apply(pd.to_numeric, errors="coerce").dropna()
            if len(both) < 3 or both[a].nunique() < 3:
                continue
            x, y = both[a].to_numpy(float), both[b].to_numpy(float)
            slope, intercept = np.polyfit(x, y, 1)
            if np.allclose(slope * x + intercept, y, rtol=1e-6, atol=1e-9 * max(1.0, np.abs(y).max())):
                # keep the column with a fixed scale (unit_interval) as the panel, the other as its second axis
                keep, dep = (b, a) if declared[b].get("unit_interval") and not declared[a].get("unit_interval") \
                    else (a, b)
                if dep == a:
                    slope, intercept = 1.0 / slope, -intercept / slope
                found[dep] = (keep, float(slope), float(intercept))
    return found


def _arrow(column: dict) -> str:
    higher = column.get("higher_is_better")
    return "" if higher is None else (" (↑ better)" if higher else " (↓ better)")


@styled
def probe_curves(runs: list[Run], labels: list[str]) -> Figure:
    """One panel per headline probe column, as the runs' probes declare them: accuracies on 0-1 with their chance
    level, other columns with their reference level (the base model's, or chance); a column that is an affine
    function of another is that panel's right-hand axis."""
    declared = probe_metrics(runs)
    data = stage_probes(runs, labels, list(declared))
    present = {k: c for k, c in declared.items() if data[k].notna().any()}
    derived = affine_pairs(data, present)
    panels = [k for k in present if k not in derived]
    if not panels:
        fig = Figure(figsize=PANEL)
        fig.text(0.5, 0.5, "no probe column has a value for these runs", ha="center", va="center", color="gray")
        return fig
    fig, axes = _grid(len(panels), extra_height=0.7)
    groups = list(dict.fromkeys(labels))
    several = data.groupby(["group", "position"]).size().max() > 1
    palette = dict(zip(groups, sns.color_palette("tab10" if len(groups) <= 10 else "husl", len(groups))))
    base = data[data["after"] == "base"]
    notes = []
    for ax, key in zip(axes, panels):
        column = present[key]
        sns.lineplot(data, x="position", y=key, hue="group", hue_order=groups, marker="o", ax=ax, palette=palette,
                     errorbar=_t_band if several else None, markeredgewidth=0)
        chance = column.get("chance")
        if column.get("unit_interval"):
            _unit_limits(ax)
            if chance is not None:
                ax.axhline(chance, label=f"chance ({chance:.2f})", **CHANCE_STYLE)
        elif chance is not None:
            at_base = base[key].dropna()
            base_level = len(at_base) and np.allclose(at_base, chance)
            ax.axhline(chance, label="base model level" if base_level else f"chance ({chance:g})", **CHANCE_STYLE)
        ax.set_ylabel(_wrap((column.get("label") or key) + _arrow(column)))
        ax.set_title(key)
        for dep, (source, slope, intercept) in derived.items():
            if source == key and abs(slope) > 0:
                second = ax.secondary_yaxis("right", functions=(lambda v, s=slope, c=intercept: s * v + c,
                                                                lambda v, s=slope, c=intercept: (v - c) / s))
                second.set_ylabel(_wrap(present[dep].get("label") or dep))
                notes.append(f"right axis: {dep} = {slope:.3g} × {key} {'+' if intercept >= 0 else '−'} "
                             f"{abs(intercept):.3g} (the same curve)")
        _stage_ticks(ax, runs)
    undefined = [k for k, c in declared.items() if k not in present]
    if undefined:
        notes.append("no value for these runs: " + ", ".join(undefined))
    _figure_legend(fig, axes, notes=notes)
    fig.suptitle("retention probes across stages (base model first)")
    return fig


def stage_trajectory(run: Run, primary: list[str]) -> pd.DataFrame:
    """One row per stage (after the base row): learned so far (mean over the tasks trained so far of R[j,j] - b[j]),
    -BWT so far (mean over earlier tasks j of R[j,j] - R[i,j]; undefined at the first stage) and each primary probe
    column. The last row equals the run's summary (learned, -bwt)."""
    R, b = run.matrix, run.matrix.loc["base"]
    probe = run.probe.set_index("after")
    if run.stages != list(R.columns):  # a pooled reference: its one stage
        rows = [{"stage": run.stages[-1], "index": 1, "learned": float((R.loc[run.stages[-1]] - b).mean()),
                 "-bwt": np.nan}]
    else:
        rows = []
        for i, stage in enumerate(run.stages):
            done = run.stages[:i + 1]
            learned = float(np.mean([R.loc[t, t] - b[t] for t in done]))
            minus_bwt = float(np.mean([R.loc[t, t] - R.loc[stage, t] for t in done[:-1]])) if i else np.nan
            rows.append({"stage": stage, "index": i + 1, "learned": learned, "-bwt": minus_bwt})
    for row in rows:
        for key in primary:
            row[key] = float(probe.loc[row["stage"], key]) if key in probe and row["stage"] in probe.index \
                and pd.notna(probe.loc[row["stage"], key]) else np.nan
    return pd.DataFrame(rows)


@styled
def learning_vs_forgetting(table: pd.DataFrame, primary: dict[str, dict], runs: list[Run] | None = None,
                           labels: list[str] | None = None) -> Figure:
    """Learned against each primary probe column (a kept capability, as its probe declares it) and against -BWT,
    panels sharing the x axis. With one trained group and its ``runs``: the trajectory stage by stage (mean over
    the group's runs); otherwise one point per row of the comparison table. A column without a value for these
    runs has no panel (the figure says so)."""
    rows = table[table["strategy"] != BASE_LABEL].copy()
    extra = [c for c in table.columns[:table.columns.get_loc("n")] if c not in ("strategy", "lr")]
    rows["series"] = [" ".join([r["strategy"]] + [f"{c}={r[c]}" for c in extra]) for _, r in rows.iterrows()]
    rows["lr_value"] = pd.to_numeric(rows["lr"], errors="coerce") if "lr" in rows else np.nan
    rows["-bwt"], rows["-bwt_ci95"] = -rows["bwt"], rows["bwt_ci95"]
    series = list(dict.fromkeys(rows["series"]))
    palette = dict(zip(series, sns.color_palette("tab10" if len(series) <= 10 else "husl", len(series))))
    trajectory = runs is not None and len(rows) == 1 and len(runs) >= 1
    steps = None
    if trajectory:
        per_run = [stage_trajectory(r, list(primary)) for r in runs]
        steps = pd.concat(per_run).groupby("index", sort=True).mean(numeric_only=True)
        steps["stage"] = per_run[0].set_index("index")["stage"].reindex(steps.index).fillna("")
    candidates = [(k, (c.get("label") or k) + _arrow(c)) for k, c in primary.items() if k in rows] + [
        ("-bwt", "forgetting of earlier tasks: −BWT (↓ better)")]
    defined = (lambda k: steps[k].notna().any()) if trajectory else (lambda k: rows[k].notna().any())
    panels = [(k, label) for k, label in candidates if defined(k)]
    omitted = [k.lstrip("-") for k, _ in candidates if not defined(k)]
    if not panels:
        fig = Figure(figsize=PANEL)
        fig.text(0.5, 0.5, "neither the primary probe columns nor BWT\nhave a value for these runs", ha="center",
                 va="center", color="gray")
        return fig
    # a swept series (several rows) labels its points with their learning rates; a one-row series carries its
    # learning rate in the legend, so that many strategies at one x do not pile their labels on each other. Decided
    # per series, not per panel, so that a series has one legend entry even where a panel lacks one of its points.
    points = rows["series"].value_counts()
    swept = set(points.index[points > 1]) if "lr" in rows else set()
    lr_of = rows.groupby("series")["lr"].first() if "lr" in rows else {}
    legend = {name: f"{name} (lr {lr_of[name]})" if "lr" in rows and name not in swept and rows["lr"].nunique() > 1
              else name for name in series}
    fig, axes = _grid(len(panels), sharex=True, extra_height=0.8)
    for ax, (key, ylabel) in zip(axes, panels):
        if trajectory:
            name = series[0]
            part = steps[steps[key].notna()]
            xs, ys = list(part["learned"]), list(part[key])
            base = table.loc[table["strategy"] == BASE_LABEL, key] if key in table else pd.Series(dtype=float)
            if key in primary and base.notna().any():
                xs, ys = [0.0] + xs, [float(base.dropna().iloc[0])] + ys
                ax.plot([0], [ys[0]], marker="*", markersize=10, color="black", linestyle="none",
                        label="base (no training)", zorder=3)
            ax.plot(xs, ys, "o-", color=palette[name], label=f"{name}: stage by stage", zorder=2)
            for _, r in part.iterrows():
                ax.annotate(str(r["stage"]), (r["learned"], r[key]), textcoords="offset points", xytext=(4, 3),
                            fontsize=6.5, color=palette[name])
            continue
        for name in series:
            part = rows[(rows["series"] == name) & rows[key].notna()].sort_values("lr_value")
            if part.empty:
                continue
            color = palette[name]
            ax.errorbar(part["learned"], part[key], xerr=part["learned_ci95"].fillna(0),
                        yerr=part[f"{key}_ci95"].fillna(0), fmt="o-" if len(part) > 1 else "o", color=color,
                        label=legend[name], capsize=2.5, markersize=5, linewidth=1)
            if name in swept:
                for _, r in part.iterrows():
                    ax.annotate(f"{r['lr']}", (r["learned"], r[key]), textcoords="offset points", xytext=(4, 3),
                                fontsize=6.5, color=color)
        base = table.loc[table["strategy"] == BASE_LABEL, key] if key in table else pd.Series(dtype=float)
        if key in primary and base.notna().any():
            ax.plot([0], [float(base.dropna().iloc[0])], marker="*", markersize=10, color="black", linestyle="none",
                    label="base (no training)", zorder=3)
    for ax, (key, ylabel) in zip(axes, panels):
        ax.set_ylabel(_wrap(ylabel))
        ax.set_xlabel("learned: mean over tasks of R[j,j] − b[j]")
        chance = 0.0 if key == "-bwt" else primary.get(key, {}).get("chance")
        if chance is not None:
            ax.axhline(chance, **CHANCE_STYLE, label="no forgetting (0)" if key == "-bwt" else f"chance ({chance:g})")
        ax.axvline(0.0, color="0.6", linewidth=0.8, zorder=1)
    notes = []
    if omitted:
        notes.append("no panel for " + ", ".join(omitted) + ": undefined for these runs")
    n = int(rows["n"].max()) if len(rows) else 0
    notes.append("points: the stages of one run, mean over its seeds" if trajectory else
                 ("bars: Student-t 95% intervals" if n > 1 else "one run per point: no intervals"))
    _figure_legend(fig, axes, ncol=min(3, len(series) + 2), notes=notes)
    fig.suptitle("learning vs forgetting: compare strategies at matched learning")
    return fig


@styled
def loss_curves(runs: list[Run], labels: list[str]) -> Figure | None:
    """The training loss of every logged step (losses.csv), stages one after another on the x axis, coloured by
    stage; one panel per group (mean over its runs, Student-t band). None when no run logged a loss."""
    groups = list(dict.fromkeys(labels))
    frames = []
    for run, label in zip(runs, labels):
        losses = run.losses
        if losses is None or losses.empty or "loss" not in losses:
            continue
        part = losses[["stage", "step", "loss"]].copy()
        part["stage_index"] = part["stage"].map({s: i for i, s in enumerate(dict.fromkeys(part["stage"]))})
        offsets = part.groupby("stage_index")["step"].max().cumsum().shift(fill_value=0)
        part["global_step"] = part["step"] + part["stage_index"].map(offsets)
        part["group"] = label
        frames.append(part)
    if not frames:
        return None
    data = pd.concat(frames, ignore_index=True)
    groups = [g for g in groups if g in set(data["group"])]
    fig, axes = _grid(len(groups), sharey=True, extra_height=0.6)
    stages = list(dict.fromkeys(data["stage"]))
    palette = dict(zip(stages, sns.color_palette("tab10", len(stages))))
    for ax, group in zip(axes, groups):
        part = data[data["group"] == group]
        several = part.groupby(["global_step"]).size().max() > 1
        for stage, piece in part.groupby("stage", sort=False):
            sns.lineplot(piece, x="global_step", y="loss", ax=ax, color=palette[stage], label=stage,
                         errorbar=_t_band if several else None, marker="." if piece["global_step"].nunique() <= 40
                         else None, markeredgewidth=0)
        bounds = part.groupby("stage_index")["global_step"].max().iloc[:-1]
        for x in bounds:
            ax.axvline(x + 0.5, color="0.6", linewidth=0.8, linestyle=":", zorder=1)
        ax.set_title(group)
        ax.set_xlabel("optimizer step (stages one after another)")
        ax.set_ylabel("training loss")
    _figure_legend(fig, axes, title="stage")
    fig.suptitle("training loss of every step (losses.csv)")
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
            with figure_style():
                fig = plot(run)
            if fig is not None:
                name = plot.__name__
                written += _saved(fig, out, name if single else f"{name}-{slug(group)}")
    written += _saved(forgetting_curves(runs, labels), out, "forgetting_curves")
    written += _saved(probe_curves(runs, labels), out, "probe")
    table = compare_table(runs)
    primary = {k: c for k, c in probe_metrics(runs).items() if c.get("primary")}
    written += _saved(learning_vs_forgetting(table, primary, runs, labels), out, "learning_vs_forgetting")
    losses = loss_curves(runs, labels)
    if losses is not None:
        written += _saved(losses, out, "loss_curves")
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
        with figure_style():
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
