"""The facts stream's own plot: the relation graph of what the final model believes (from predictions.csv).

Characters are nodes, camp A on the left half of a circle and camp B on the right; every pair is an edge coloured
by the relation the model predicts, dashed where the prediction is wrong; the trained pairs and the held-out pairs
(never trained on) are drawn in separate rows. Registered as a
stream plot of ``facts`` (continual.streams), drawn by continual.plots with the generic figures.
"""

from __future__ import annotations

import re

import networkx as nx
import numpy as np
from matplotlib.figure import Figure

from continual.streams.facts import WORLDS


def relation_graph(run) -> Figure | None:
    """The relation every pair of characters gets from the final model (the run's predictions.csv; a
    continual.results.Run): one column per world, the trained pairs in the top row and the held-out pairs (never
    trained on) in the bottom row."""
    predictions = run.predictions
    if predictions is None or predictions.empty:
        return None
    after = predictions["after"].iloc[-1]
    tasks = [t for t in run.matrix.columns if t in WORLDS]
    if not tasks:
        return None
    camp_size = int((run.config.get("stream_options") or {}).get("facts.camp_size", 8))
    splits = [("train", "trained pairs"), ("heldout", "held-out pairs")]
    fig = Figure(figsize=(min(7.2, 2.5 * len(tasks)) + 0.2, 2.45 * len(splits) + 0.9), layout="constrained")
    axes = fig.subplots(len(splits), len(tasks), squeeze=False)
    colors = {"friend": "#2b8cbe", "enemy": "#e34a33"}
    camp_colors = ("#fdd49e", "#bcbddc")
    for col, task in enumerate(tasks):
        camps = [camp[:camp_size] for camp in WORLDS[task].camps]
        names = [n for camp in camps for n in camp]
        finder = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)))
        # camp A on the left half of a circle, camp B on the right
        pos = {}
        for side, camp in enumerate(camps):
            angles = np.linspace(np.pi / 2 + 0.25, 3 * np.pi / 2 - 0.25, len(camp)) + (np.pi if side else 0)
            pos.update({n: (np.cos(a), np.sin(a)) for n, a in zip(camp, angles)})
        for row, (split, split_title) in enumerate(splits):
            ax = axes[row][col]
            part = predictions[(predictions["task"] == task) & (predictions["split"] == split)]
            graph = nx.Graph()
            graph.add_nodes_from(names)
            for rec in part.to_dict("records"):
                pair = finder.findall(rec["prompt"])[-2:]  # the last two names: a chat template may add text before
                if len(pair) == 2:
                    graph.add_edge(*pair, predicted=str(rec["predicted"]).strip(" ."),
                                   correct=str(rec["correct"]) == "True")
            for correct, style, width, alpha in ((True, "solid", 0.6, 0.45), (False, "dashed", 1.1, 0.9)):
                edges = [(u, v) for u, v, d in graph.edges(data=True) if d["correct"] == correct]
                nx.draw_networkx_edges(graph, pos, edgelist=edges, ax=ax, style=style, width=width, alpha=alpha,
                                       edge_color=[colors.get(graph.edges[e]["predicted"], "gray") for e in edges])
            nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=45, edgecolors="black", linewidths=0.6,
                                   node_color=[camp_colors[0] if n in camps[0] else camp_colors[1] for n in names],
                                   nodelist=names)
            for n, (x, y) in pos.items():
                ax.text(x * 1.09, y * 1.09, n, fontsize=5, ha="left" if x > 0 else "right", va="center")
            right = sum(d["correct"] for _, _, d in graph.edges(data=True))
            ax.set_title(f"{task}, {split_title}: {right}/{graph.number_of_edges()} right", fontsize=7.5)
            ax.set_xlim(-2.1, 2.1)
            ax.set_ylim(-1.2, 1.2)
            ax.set_axis_off()
    from matplotlib.lines import Line2D
    first = [WORLDS[t].camps[0][0] for t in tasks]
    handles = [Line2D([], [], color=colors["friend"], label="predicted friend"),
               Line2D([], [], color=colors["enemy"], label="predicted enemy"),
               Line2D([], [], color="gray", linestyle="dashed", linewidth=1.1, label="wrong"),
               Line2D([], [], color="gray", alpha=0.45, linewidth=0.6, label="right"),
               Line2D([], [], marker="o", linestyle="none", markerfacecolor=camp_colors[0], markeredgecolor="black",
                      label="camp of " + ", ".join(first) + " (left)"),
               Line2D([], [], marker="o", linestyle="none", markerfacecolor=camp_colors[1], markeredgecolor="black",
                      label="the other camp (right)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, fontsize=7)
    fig.suptitle(f"what the model believes after '{after}' ({run.summary['strategy']}, seed "
                 f"{run.summary['seed']}): friends within a camp, enemies across", fontsize=8.5)
    return fig
