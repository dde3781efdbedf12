"""The facts stream's own plot: the relation graph of what the final model believes (from predictions.csv).

Characters are nodes, camp A on the left half of a circle and camp B on the right; every trained and held-out
pair is an edge coloured by the relation the model predicts, dashed where the prediction is wrong. Registered as a
stream plot of ``facts`` (continual.streams), drawn by continual.plots with the generic figures.
"""

from __future__ import annotations

import re

import networkx as nx
import numpy as np
from matplotlib.figure import Figure

from continual.streams.facts import WORLDS


def relation_graph(run) -> Figure | None:
    """The relation every pair of characters gets from the final model, one panel per world (the run's
    predictions.csv; a continual.results.Run)."""
    predictions = run.predictions
    if predictions is None or predictions.empty:
        return None
    after = predictions["after"].iloc[-1]
    tasks = [t for t in run.matrix.columns if t in WORLDS]
    if not tasks:
        return None
    camp_size = int((run.config.get("stream_options") or {}).get("facts.camp_size", 8))
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
                graph.add_edge(*pair, predicted=str(rec["predicted"]).strip(" ."),
                               correct=str(rec["correct"]) == "True", split=rec["split"])
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
