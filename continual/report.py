"""One self-contained HTML report of run directories: summary table, plots, per-run matrices and configs.

Everything is inside the file: plots are PNG data URIs, styles are inline, nothing is fetched (no scripts, no
stylesheets, no fonts, no external links), so the report can be mailed, archived or opened offline. No absolute
local path is written into it: runs are named relative to the report's folder and absolute paths in the configs
are shortened to their last component.

The plots are the runs' own files (RUN/plots/ for one run, or DIR/plots drawn by ``continual plot DIR`` over the
same runs): the report embeds them as they are, so it builds in about the time it takes to read the runs. It draws
them only when they are missing or older than a run's summary, into that plots folder (so the next report finds
them), or into a temporary folder when none is named.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import re
import tempfile
from pathlib import Path

import pandas as pd

from continual.compare import BASE_LABEL, compare_table, conventions_text, find_runs, format_lr, formatted, \
    group_labels
from continual.errors import ContinualError
from continual.results import Run, write_atomic

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1.5em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 0.6em 0 1.6em; } figcaption { font-size: 0.9em; color: #444; max-width: 760px; }
img.plot { width: 760px; max-width: 100%; height: auto; display: block; margin: 0.4em 0; }
details { margin: 0.4em 0; } summary { cursor: pointer; font-weight: 600; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
ul.notes { font-size: 0.85em; color: #444; }
"""

PLOT_TEXT = {
    "learning_vs_forgetting": "Learning vs forgetting: how much each strategy learned (x) against what it kept of "
                              "the original model (the probes' primary columns) and of earlier tasks (−BWT). "
                              "Compare strategies at matched learning; one run: its trajectory stage by stage.",
    "forgetting_curves": "Accuracy on every task after every stage; a star marks each task right after its own "
                         "stage: a drop after the star is forgetting.",
    "probe": "The retention probes across stages: each probe's headline columns (what the model keeps of its "
             "original capability), base model first, with the chance or base-model level dashed.",
    "loss_curves": "The training loss of every step, stage after stage (losses.csv).",
}
GENERIC = ("learning_vs_forgetting", "forgetting_curves", "probe")  # what every plots folder holds
OWN = ("loss_curves",)  # drawn by this version; embedded where present

# Human column names of the summary table (metric columns get the better direction from their declaration).
COLUMN_NAMES = {"strategy": "strategy", "lr": "learning rate", "n": "runs", "acc": "ACC", "learned": "learned",
                "bwt": "BWT", "fwt": "FWT", "forgetting": "forgetting", "trainable": "trainable parameters",
                "wall_s": "wall time (s)", "memory_mb": "peak memory (MB)", "strategy_options": "strategy options",
                "steps": "steps", "batch_size": "batch size", "model": "model", "order": "task order"}
SPLIT_NAMES = {"train": "trained", "reversed": "reversed", "heldout": "held-out", "test": "test"}


# ------------------------------------------------------------------------------------------------ pieces

def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _figure(path: Path, alt: str, caption: str = "") -> str:
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{_img(path, alt)}{text}</figure>"


def _arrow(higher) -> str:
    return "" if higher is None else (" ↑" if higher else " ↓")


def column_names(table: pd.DataFrame, probe_columns: dict[str, dict]) -> dict[str, str]:
    """Each summary-table column's header: a human name and, for a metric, ↑ (higher is better) or ↓."""
    metrics = table.attrs.get("metrics", {})
    names = {}
    for column in table.columns:
        if column.endswith("_ci95"):
            continue
        if column in probe_columns:
            name = probe_columns[column].get("label") or column.replace("_", " ")
        elif column.startswith("acc_"):
            name = f"ACC {SPLIT_NAMES.get(column[4:], column[4:])}"
        elif column.startswith("acc[") and column.endswith("]"):  # one ACC per scoring scale (mixed stream)
            name = f"ACC ({column[4:-1].replace('_', ' ')} tasks)"
        else:
            name = COLUMN_NAMES.get(column, column.replace("_", " "))
        higher = metrics[column][1] if column in metrics else (True if column.startswith("acc_") else None)
        names[column] = name + _arrow(higher)
    return names


def summary_table(table: pd.DataFrame, probe_columns: dict[str, dict]) -> tuple[str, str]:
    """(the base model's values as a sentence, the HTML table of the trained rows). The base row is filler in the
    table (nothing learned, nothing forgotten, no cost: n/a or 0 by definition), so its informative values (ACC,
    the probe columns not fixed by definition) are said once above it instead."""
    shown = formatted(table)
    base = shown[table["strategy"] == BASE_LABEL]
    trained = shown[table["strategy"] != BASE_LABEL].copy()
    if trained.empty:  # nothing but base rows: show them
        trained, base = shown.copy(), shown.iloc[0:0]
    names = column_names(table, probe_columns)
    sentence = ""
    if len(base):
        raw = table[table["strategy"] == BASE_LABEL].iloc[0]
        parts = [f"ACC {base.iloc[0]['acc']}"]
        for column, declared in probe_columns.items():
            if column not in base or not declared.get("headline", True):
                continue
            value, reference = raw[column], declared.get("chance")
            if pd.isna(value) or (declared.get("higher_is_better") is False and reference is not None
                                  and abs(float(value) - float(reference)) < 1e-12):
                continue  # undefined, or the base model's own level by definition (perplexity ratio 1, KL 0)
            parts.append(f"{html.escape(declared.get('label') or column)} {base.iloc[0][column]}")
        sentence = ("<p>The base model (before any training" + (f", {len(base)} base rows: the first" if len(base) > 1
                                                                 else "") + "): " + "; ".join(parts) + ".</p>")
    if "lr" in trained:
        trained["lr"] = [format_lr(v) if str(v) not in ("", "nan") else "" for v in trained["lr"]]
    trained = trained.rename(columns=names)
    return sentence, trained.to_html(index=False, escape=True, border=0, na_rep="n/a")


class Paths:
    """Paths as the report may show them: relative to the report's folder, never absolute."""

    def __init__(self, report_dir: Path | None):
        self.report_dir = Path(report_dir).resolve() if report_dir is not None else None

    def show(self, path: Path) -> str:
        path = Path(path).resolve()
        if self.report_dir is not None:
            return os.path.relpath(path, self.report_dir)
        return path.name

    def scrub(self, text: str, roots: list[Path]) -> str:
        """``text`` with the runs' directories relative and any other absolute path cut to its last part."""
        for root in sorted({Path(r).resolve() for r in roots}, key=lambda p: -len(str(p))):
            text = text.replace(str(root), self.show(root))
        home = str(Path.home())
        text = text.replace(home, "~")
        return re.sub(r"(?<![\w.~:/])/(?:[^\s/'\"]+/)+([^\s/'\"]*)", r"…/\1", text)


def _run_section(run: Run, label: str, paths: Paths) -> str:
    s = run.summary
    matrix = run.matrix.map(lambda v: f"{v:.3f}")
    headline = [f"{html.escape(k)} {_num(s['probe'].get(k))}, " for k, c in run.probe_columns.items()
                if c.get("headline")]
    parts = [f"<details><summary>{html.escape(label)} — seed {s['seed']}, tasks {html.escape(', '.join(s['tasks']))}"
             f" — {html.escape(paths.show(run.path))}</summary>",
             f"<p>ACC {s['acc']:.3f}, BWT {_num(s['bwt'])}, FWT {_num(s['fwt'])}, forgetting "
             f"{_num(s['forgetting'])}; " + "".join(headline)
             + f"{s['trainable_parameters']:,} trainable "
             f"parameters; {s['wall_time_s']:.0f} s; peak memory {s['peak_memory_mb']:.0f} MB "
             f"({html.escape(s.get('peak_memory_kind', ''))}); device {html.escape(str(s.get('device')))}.</p>",
             "<p>Accuracy matrix (row <code>base</code> = before any stage):</p>",
             matrix.reset_index().to_html(index=False, border=0)]
    for split, frame in run.splits.items():
        parts += [f"<p>{html.escape(split)} split:</p>",
                  frame.map(lambda v: f"{v:.3f}").reset_index().to_html(index=False, border=0)]
    config = paths.scrub((run.path / "config.yaml").read_text(encoding="utf-8"), [run.path])
    parts += ["<p>config.yaml:</p>", f"<pre>{html.escape(config)}</pre>", "</details>"]
    return "\n".join(parts)


def _num(v) -> str:
    return "n/a" if v is None or v != v else f"{v:+.3f}"


# ------------------------------------------------------------------------------------------------ plots

def existing_plots(runs: list[Run], folder: Path | None) -> dict[str, Path] | None:
    """The PNGs of a plots folder drawn over these runs (none of the runs finished after them), else None."""
    if folder is None or not folder.is_dir():
        return None
    pngs = {p.stem: p for p in sorted(folder.glob("*.png"))}
    if not all(stem in pngs for stem in GENERIC):
        return None
    drawn = min(pngs[stem].stat().st_mtime for stem in GENERIC)
    if any((r.path / "summary.json").stat().st_mtime > drawn for r in runs):
        return None  # a run finished (or was re-run) after these plots were drawn
    return pngs


def report_plots(runs: list[Run], folder: Path | None, scratch: str) -> dict[str, Path]:
    """The plots the report embeds: the folder's own when up to date, else drawn (into the folder when it can be
    written, so the next report finds them; into ``scratch`` otherwise)."""
    written = existing_plots(runs, folder)
    if written is not None:
        return written
    from continual.plots import write_plots  # matplotlib only when something is drawn
    target = scratch
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            target = folder if os.access(folder, os.W_OK) else scratch
        except OSError:
            pass
    return {p.stem: p for p in write_plots(runs, target) if p.suffix == ".png"}


def _ordered(stems, order: list[str]) -> list[str]:
    """Stream order for per-group files (matrix-<group>): the order of the comparison table's groups."""
    return sorted(stems, key=lambda s: next((i for i, g in enumerate(order) if s.endswith(g)), len(order)))


# ------------------------------------------------------------------------------------------------ the report

def build_report(runs: list[Run], title: str | None = None, plots_dir: Path | None = None,
                 report_dir: Path | None = None) -> str:
    """The HTML text. ``plots_dir``: a folder of plots drawn over these runs (default: RUN/plots of a single run);
    ``report_dir``: where the file goes (run paths are shown relative to it)."""
    from continual.compare import probe_metrics
    table = compare_table(runs)
    labels = group_labels(runs)
    probes = probe_metrics(runs)
    paths = Paths(report_dir)
    streams = sorted({r.summary.get("stream", "?") for r in runs})
    models = sorted({paths.scrub(str(r.summary.get("model", "?")), []) for r in runs})
    title = title or f"continual report: {', '.join(streams)} stream, {', '.join(models)}"
    base_sentence, table_html = summary_table(table, probes)
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="meta">{len(runs)} run(s), {len(set(labels))} group(s); generated '
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by <code>continual report</code>.</p>",
            "<h2>Summary</h2>",
            "<p>One row per strategy and setting, mean ± Student-t 95% interval over its runs; ↑ higher is better, "
            "↓ lower is better; n/a: undefined.</p>",
            base_sentence, table_html,
            "<details><summary>Definitions and conventions</summary>",
            '<ul class="notes">' + "".join(f"<li>{html.escape(line)}</li>" for line in conventions_text(table))
            + "</ul></details>"]
    folder = plots_dir if plots_dir is not None else (runs[0].path / "plots" if len(runs) == 1 else None)
    with tempfile.TemporaryDirectory(prefix="continual-report-") as scratch:
        written = report_plots(runs, Path(folder) if folder is not None else None, scratch)
        body.append("<h2>Plots</h2>")
        for stem, text in PLOT_TEXT.items():
            if stem in written:
                body.append(_figure(written[stem], stem, text))
        body.append("<h2>Accuracy matrices</h2>")
        groups = [slug_of(g) for g in dict.fromkeys(labels)]
        body += [_figure(written[stem], stem) for stem in _ordered([s for s in written if s.startswith("matrix")],
                                                                  groups)]
        own = [stem for stem in written if stem not in GENERIC + OWN and not stem.startswith("matrix")]
        if own:
            body.append("<h2>The streams' own plots</h2>")
            body += [_figure(written[stem], stem) for stem in own]
    body.append("<h2>Runs</h2>")
    body += [_run_section(run, label, paths) for run, label in zip(runs, labels)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(b for b in body if b) + "\n</body>\n</html>\n")


def slug_of(group: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", group).strip("_") or "run"  # continual.plots.slug, without matplotlib


def write_report(runs_or_paths, out: str | os.PathLike, title: str | None = None,
                 plots_dir: str | os.PathLike | None = None) -> Path:
    runs = runs_or_paths if runs_or_paths and isinstance(runs_or_paths[0], Run) else find_runs(runs_or_paths)
    out = Path(out)
    if out.is_dir():
        raise ContinualError(f"--out {out} is a directory; give the HTML file to write, e.g. {out / 'report.html'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContinualError(f"cannot create {out.parent}: {exc.strerror}; choose another --out") from None
    write_atomic(out, build_report(runs, title, Path(plots_dir) if plots_dir is not None else None, out.parent))
    return out


def cmd_report(paths: list[str], out: str | None) -> Path:
    first = Path(paths[0])
    target = Path(out) if out else (first / "report.html")
    runs = find_runs(paths)
    plots = Path(paths[0]) / "plots" if len(runs) > 1 else None  # `continual plot DIR` draws there
    written = write_report(runs, target, plots_dir=plots)
    print(f"report written to {written} ({written.stat().st_size / 1e6:.1f} MB)")
    return written
