"""One self-contained HTML report of run directories: comparison table, plots, per-run matrices and configs.

Everything is inside the file: plots are PNG data URIs, styles are inline, nothing is fetched (no scripts, no
stylesheets, no fonts, no external links), so the report can be mailed, archived or opened offline. The plots are
the runs' own (RUN/plots/ for one run, or a plots folder drawn over the same runs): they are drawn here only when
none exists yet or the runs changed since.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import tempfile
from pathlib import Path

import pandas as pd

from continual.compare import compare_table, conventions_text, find_runs, formatted, group_labels
from continual.errors import ContinualError
from continual.plots import write_plots
from continual.results import Run, write_atomic

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1.5em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0 1.2em; }
details { margin: 0.4em 0; } summary { cursor: pointer; font-weight: 600; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
ul.notes { font-size: 0.85em; color: #444; }
"""

PLOT_TEXT = {
    "learning_vs_forgetting": "Learning vs forgetting: how much each strategy learned (x) against what it kept of "
                              "the original model (the probes' primary columns) and of earlier tasks (−BWT). "
                              "Compare strategies at matched learning.",
    "forgetting_curves": "Score on every task after every stage: a drop after a task's own stage is forgetting.",
    "probe": "The probes across stages: each probe's headline columns (what the model keeps of its original "
             "capability), base model first.",
}
GENERIC = ("learning_vs_forgetting", "forgetting_curves", "probe")


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, na_rep="n/a")


def _run_section(run: Run, label: str) -> str:
    s = run.summary
    matrix = run.matrix.map(lambda v: f"{v:.3f}")
    parts = [f"<details><summary>{html.escape(label)} — seed {s['seed']}, tasks {html.escape(', '.join(s['tasks']))}"
             f" — {html.escape(str(run.path))}</summary>",
             f"<p>ACC {s['acc']:.3f}, BWT {_num(s['bwt'])}, FWT {_num(s['fwt'])}, forgetting "
             f"{_num(s['forgetting'])}; "
             + "".join(f"{html.escape(k)} {_num(s['probe'].get(k))}, " for k, c in run.probe_columns.items()
                       if c.get("headline"))
             + f"{s['trainable_parameters']:,} trainable "
             f"parameters; {s['wall_time_s']:.0f} s; peak memory {s['peak_memory_mb']:.0f} MB "
             f"({html.escape(s.get('peak_memory_kind', ''))}); device {html.escape(str(s.get('device')))}.</p>",
             "<p>Accuracy matrix (row <code>base</code> = before any stage):</p>",
             matrix.reset_index().to_html(index=False, border=0)]
    for split, frame in run.splits.items():
        parts += [f"<p>{html.escape(split)} split:</p>",
                  frame.map(lambda v: f"{v:.3f}").reset_index().to_html(index=False, border=0)]
    config = (run.path / "config.yaml").read_text(encoding="utf-8")
    parts += ["<p>config.yaml:</p>", f"<pre>{html.escape(config)}</pre>", "</details>"]
    return "\n".join(parts)


def _num(v) -> str:
    return "n/a" if v is None else f"{v:+.3f}"


def existing_plots(runs: list[Run], folder: Path | None) -> dict[str, Path] | None:
    """The PNGs of a plots folder drawn over these runs (none of the runs finished after them), else None."""
    if folder is None or not folder.is_dir():
        return None
    pngs = {p.stem: p for p in sorted(folder.glob("*.png"))}
    if not all(stem in pngs for stem in GENERIC):
        return None
    drawn = min(p.stat().st_mtime for p in pngs.values())
    if any((r.path / "summary.json").stat().st_mtime > drawn for r in runs):
        return None  # a run finished (or was re-run) after these plots were drawn
    return pngs


def build_report(runs: list[Run], title: str | None = None, plots_dir: Path | None = None) -> str:
    """The HTML text. ``plots_dir``: a folder of plots drawn over these runs (default: RUN/plots of a single run);
    without an up-to-date one, the plots are drawn into a temporary folder."""
    table = compare_table(runs)
    labels = group_labels(runs)
    streams = sorted({r.summary.get("stream", "?") for r in runs})
    models = sorted({r.summary.get("model", "?") for r in runs})
    title = title or f"continual report: {', '.join(streams)} stream, {', '.join(models)}"
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="meta">{len(runs)} run(s), {len(set(labels))} group(s); generated '
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by <code>continual report</code>.</p>",
            "<h2>Comparison</h2>", _table_html(formatted(table)),
            '<ul class="notes">' + "".join(f"<li>{html.escape(line)}</li>" for line in conventions_text(table))
            + "</ul>"]
    folder = plots_dir if plots_dir is not None else (runs[0].path / "plots" if len(runs) == 1 else None)
    with tempfile.TemporaryDirectory(prefix="continual-report-") as scratch:
        written = existing_plots(runs, Path(folder) if folder is not None else None)
        if written is None:
            written = {p.stem: p for p in write_plots(runs, scratch) if p.suffix == ".png"}
        body.append("<h2>Plots</h2>")
        for stem, text in PLOT_TEXT.items():
            if stem in written:
                body += [f"<p>{html.escape(text)}</p>", _img(written[stem], stem)]
        body.append("<h2>Accuracy matrices</h2>")
        body += [_img(p, stem) for stem, p in written.items() if stem.startswith("matrix")]
        own = [(stem, p) for stem, p in written.items() if stem not in GENERIC and not stem.startswith("matrix")]
        if own:
            body.append("<h2>The streams' own plots</h2>")
            body += [_img(p, stem) for stem, p in own]
    body.append("<h2>Runs</h2>")
    body += [_run_section(run, label) for run, label in zip(runs, labels)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


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
    write_atomic(out, build_report(runs, title, Path(plots_dir) if plots_dir is not None else None))
    return out


def cmd_report(paths: list[str], out: str | None) -> Path:
    first = Path(paths[0])
    target = Path(out) if out else (first / "report.html")
    runs = find_runs(paths)
    plots = Path(paths[0]) / "plots" if len(runs) > 1 else None  # `continual plot DIR` draws there
    written = write_report(runs, target, plots_dir=plots)
    print(f"report written to {written} ({written.stat().st_size / 1e6:.1f} MB)")
    return written
