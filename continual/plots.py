"""Forgetting plots (seaborn on matplotlib's Agg canvas), PNG + SVG, from run directories.

  matrix               accuracy-matrix heatmap (rows: base then after each stage; columns: tasks), one panel per
                       evaluation split; one file per strategy group when several are given
  forgetting_curves    score on every task across stages (the classic forgetting curve), one panel per group
  probe                retention probe components across stages (cloze, retention, perplexity ratio, KL), one line
                       per group
  learning_vs_forgetting  x = how much was learned (mean R[j,j] - b[j]), y = retention and -BWT: one point per
                       strategy and learning rate, Student-t 95% intervals when a point has >= 2 runs
  relation_graph       facts stream: what the final model believes (from predictions.csv): characters as nodes,
                       an edge per pair coloured by the predicted relation, dashed when the prediction is wrong

Figures are built on ``matplotlib.figure.Figure`` (no pyplot, no global backend switch) and every file is written
to a temporary name and renamed. Several seeds (or task orders) of one group are averaged; bands and error bars are
Student-t 95% intervals (continual.compare.mean_interval).
"""

from __future__ import annotations

import io
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from continual.compare import BASE_LABEL, Run, compare_table, find_runs, group_labels, mean_interval
from continual.errors import ContinualError
from continual.results import write_atomic

sns.set_theme(style="whitegrid", context="notebook")


# ------------------------------------------------------------------------------------------------ files

def _write_bytes_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ContinualError(f"could not write {path}: {exc.strerror or exc}; check the output folder") from exc
        raise


def save(fig: Figure, out: Path, name: str) -> list[Path]:
    """name.png (150 dpi) and name.svg, atomically."""
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    fig.savefig(svg, format="svg", bbox_inches="tight")
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    _write_bytes_atomic(paths[0], png.getvalue())
    write_atomic(paths[1], svg.getvalue())
    return paths


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "run"


# ------------------------------------------------------------------------------------------------ data

def _positions(run: Run) -> dict[str, int]:
    """x position of each matrix row: base 0, stage i at i+1; a joint run's single stage sits at the end (T)."""
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


def stage_probes(runs: list[Run], labels: list[str]) -> pd.DataFrame:
    rows = []
    for run, label in zip(runs, labels):
        pos = _positions(run)
        for rec in run.probe.to_dict("records"):
            rows.append({"group": label, "position": pos[rec["after"]], "after": rec["after"],
                         **{k: rec.get(k, np.nan) for k in ("cloze", "retention", "ppl_ratio", "kl")}})
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
    elif not orders:  # joint: one stage on every task, drawn at the end
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
        _stage_ticks(ax, [r for r, l in zip(runs, labels) if l == group])
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    fig.suptitle("score on every task after every stage")
    return fig


def probe_curves(runs: list[Run], labels: list[str]) -> Figure:
    data = stage_probes(runs, labels)
    panels = [("cloze", "knowledge cloze accuracy"), ("retention", "retention"),
              ("ppl_ratio", "perplexity ratio to base"), ("kl", "KL(base || model), nats/token")]
    panels = [(k, t) for k, t in panels if data[k].notna().any()]
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
    fig.suptitle("retention probe across stages")
    return fig


def learning_vs_forgetting(table: pd.DataFrame) -> Figure:
    """One point per row of the comparison table: learned against retention and against -BWT."""
    rows = table[table["strategy"] != BASE_LABEL].copy()
    extra = [c for c in table.columns[:table.columns.get_loc("n")] if c not in ("strategy", "lr")]
    rows["series"] = [" ".join([r["strategy"]] + [f"{c}={r[c]}" for c in extra]) for _, r in rows.iterrows()]
    rows["lr_value"] = pd.to_numeric(rows["lr"], errors="coerce") if "lr" in rows else np.nan
    rows["-bwt"], rows["-bwt_ci95"] = -rows["bwt"], rows["bwt_ci95"]
    series = list(dict.fromkeys(rows["series"]))
    palette = dict(zip(series, sns.color_palette("tab10" if len(series) <= 10 else "husl", len(series))))
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = [("retention", "retention of original capability (1 = nothing lost)"),
              ("-bwt", "forgetting of earlier tasks (−BWT)")]
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
        if key == "retention" and table.loc[table["strategy"] == BASE_LABEL, "retention"].notna().any():
            ax.scatter([0], [1], marker="*", s=140, color="black", label="base (no training)", zorder=3)
        if not rows[key].notna().any():
            ax.text(0.5, 0.5, f"{key.lstrip('-')} is undefined for these runs", transform=ax.transAxes,
                    ha="center", va="center", color="gray")
        ax.set_xlabel("learned: mean over tasks of R[j,j] − b[j]")
        ax.set_ylabel(ylabel)
    handles = {}
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    fig.legend(handles.values(), handles.keys(), loc="outside right upper", frameon=False, fontsize=8)
    n = int(rows["n"].max()) if len(rows) else 0
    fig.suptitle("learning vs forgetting: compare strategies at matched learning" +
                 (" (bars: Student-t 95% intervals)" if n > 1 else " (one run per point: no intervals)"))
    return fig


def relation_graph(run: Run, predictions: pd.DataFrame) -> Figure | None:
    """Facts stream: the relation every pair of characters gets from the final model, one panel per world."""
    import networkx as nx
    from continual.streams.facts import RELATIONS, WORLDS
    after = predictions["after"].iloc[-1]
    tasks = [t for t in run.matrix.columns if t in WORLDS]
    if not tasks:
        return None
    camp_size = int(run.config.get("camp_size", 8))
    fig = Figure(figsize=(5.6 * len(tasks), 6.2), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    colors = {"friend": "#2b8cbe", "enemy": "#e34a33"}
    for ax, task in zip(axes, tasks):
        camps = [camp[:camp_size] for camp in WORLDS[task].camps]
        names = [n for camp in camps for n in camp]
        finder = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)))
        part = predictions[(predictions["task"] == task) & predictions["split"].isin(["train", "heldout"])]
        graph = nx.Graph()
        graph.add_nodes_from(names)
        for rec in part.to_dict("records"):
            pair = finder.findall(rec["prompt"])[-2:]  # the last two names: a chat template may add text before
            if len(pair) == 2:
                graph.add_edge(*pair, predicted=RELATIONS[rec["predicted"]], correct=bool(rec["correct"]),
                               split=rec["split"])
        # camp A on the left half of a circle, camp B on the right
        pos = {}
        for side, camp in enumerate(camps):
            angles = np.linspace(np.pi / 2 + 0.25, 3 * np.pi / 2 - 0.25, len(camp)) + (np.pi if side else 0)
            pos.update({n: (np.cos(a), np.sin(a)) for n, a in zip(camp, angles)})
        for correct, style, width, alpha in ((True, "solid", 1.0, 0.45), (False, "dashed", 1.8, 0.9)):
            edges = [(u, v) for u, v, d in graph.edges(data=True) if d["correct"] == correct]
            nx.draw_networkx_edges(graph, pos, edgelist=edges, ax=ax, style=style, width=width, alpha=alpha,
                                   edge_color=[colors[graph.edges[e]["predicted"]] for e in edges])
        nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=160, edgecolors="black",
                               node_color=["#fdd49e" if n in camps[0] else "#bcbddc" for n in names],
                               nodelist=names)
        for n, (x, y) in pos.items():
            ax.text(x * 1.1, y * 1.1, n, fontsize=7, ha="left" if x > 0 else "right", va="center")
        right = sum(d["correct"] for _, _, d in graph.edges(data=True))
        ax.set_title(f"{task}: {right}/{graph.number_of_edges()} pairs right")
        ax.set_xlim(-2.0, 2.0)
        ax.set_ylim(-1.3, 1.3)
        ax.set_axis_off()
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=colors["friend"], label="predicted friend"),
               Line2D([], [], color=colors["enemy"], label="predicted enemy"),
               Line2D([], [], color="gray", linestyle="dashed", linewidth=1.8, label="wrong"),
               Line2D([], [], color="gray", alpha=0.45, label="right")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, frameon=False)
    fig.suptitle(f"what the model believes after '{after}' (trained and held-out pairs; "
                 f"{run.summary['strategy']}, seed {run.summary['seed']})")
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
        members = [r for r, l in zip(runs, labels) if l == group]
        written += _saved(matrix_heatmap(members, group), out, "matrix" if single else f"matrix-{slug(group)}")
        with_predictions = [r for r in members if (r.path / "predictions.csv").is_file()]
        if with_predictions and with_predictions[0].summary.get("stream") == "facts":
            run = min(with_predictions, key=lambda r: (not r.default_order, r.summary["seed"]))
            fig = relation_graph(run, pd.read_csv(run.path / "predictions.csv"))
            if fig is not None:
                written += _saved(fig, out, "relation_graph" if single else f"relation_graph-{slug(group)}")
    written += _saved(forgetting_curves(runs, labels), out, "forgetting_curves")
    written += _saved(probe_curves(runs, labels), out, "probe")
    written += _saved(learning_vs_forgetting(compare_table(runs)), out, "learning_vs_forgetting")
    return written


def _saved(fig: Figure, out: Path, name: str) -> list[Path]:
    try:
        return save(fig, out, name)
    finally:
        fig.clear()


def plot_run(path: str | os.PathLike) -> list[Path]:
    """RUN/plots/ for one finished run; a plotting failure is reported, never raised (the results are written)."""
    try:
        return write_plots([path], Path(path) / "plots")
    except Exception as exc:  # noqa: BLE001 - a plot must never cost a run its results
        print(f"continual: warning: the plots of {path} were not written ({type(exc).__name__}: {exc}); "
              f"the results are complete; retry with `continual plot {path}`", file=sys.stderr)
        return []


def cmd_plot(paths: list[str], out: str | None) -> list[Path]:
    runs = find_runs(paths)
    target = Path(out) if out else (runs[0].path / "plots" if len(runs) == 1 else Path(paths[0]) / "plots")
    written = write_plots(runs, target)
    print(f"{len(written)} files written to {target}: " + ", ".join(sorted({p.stem for p in written})))
    return written
