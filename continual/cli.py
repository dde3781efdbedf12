"""The ``continual`` command line: ``run`` (a stream under one or more strategies), ``list``, ``bench``, and ``plot``,
``compare``, ``report`` over finished run directories.

The flags of ``run`` and ``bench`` come from their config dataclasses (continual.config.RunConfig,
continual.bench.BenchConfig) through continual.options: every field is a flag (``--batch-size 8``,
``--chat-template/--no-chat-template``, ``--strategy-option replay.ratio=0.5``), and ``--config FILE`` reads the
same keys from YAML, under the flags. Bad input ends with one ``continual: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from tqdm.auto import tqdm

from continual import options
from continual.config import RunConfig
from continual.errors import ContinualError

PAIR_FLAGS = {"strategy_options": ("--strategy-option", "replay.ratio=0.5"),
              "stream_options": ("--stream-option", "facts.camp_size=4"),
              "probe_options": ("--probe-option", "kl.tokens=512")}


def build_parser() -> argparse.ArgumentParser:
    from continual.bench import BenchConfig
    parser = argparse.ArgumentParser(prog="continual", description="Measure what a causal LM forgets when it is "
                                     "fine-tuned on one task after another.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a stream stage by stage and score every task after every stage",
                         description="Train a stream stage by stage, score every task after every stage, probe "
                         "the model's original capability.")
    run.add_argument("--config", metavar="FILE", help="YAML file of run options (the keys are the flags below, with "
                     "underscores); flags given on the command line override it")
    options.add_arguments(run, RunConfig)
    sub.add_parser("list", help="streams, strategies, probes and model aliases, with their options")
    for name, text, out in (
            ("plot", "forgetting plots (PNG + SVG) of run directories", "folder for the plots (default: RUN/plots "
             "for one run, else DIR/plots of the first DIR)"),
            ("compare", "strategy x metric table (Markdown, CSV, LaTeX) over run directories, mean ± 95% "
             "t-interval over seeds", "folder for comparison.md/.csv/.tex (default: the first DIR)"),
            ("report", "one self-contained HTML report (tables, plots, run configs) of run directories",
             "HTML file to write (default: DIR/report.html of the first DIR)")):
        # argparse %-formats a subcommand's help (the command list) but not its description (its own page)
        cmd = sub.add_parser(name, help=text.replace("%", "%%"), description=text)
        cmd.add_argument("dirs", nargs="+", metavar="DIR", help="run directories, or folders holding them "
                         "(searched recursively)")
        cmd.add_argument("--out", default=None, help=out)
        if name == "compare":
            cmd.add_argument("--match-to", metavar="STRATEGY@LR", default=None, help="also write matched.md/.csv/"
                             ".tex: per strategy the learning rate whose `learned` (how much each stage learned "
                             "its own task) is nearest STRATEGY's at LR, e.g. naive@1e-04")
    bench = sub.add_parser("bench", help="evaluation and training throughput against plain baselines, peak memory "
                           "per strategy, end-to-end time (see docs/benchmarks.md)",
                           description="Throughput of evaluation and training against plain baselines.")
    options.add_arguments(bench, BenchConfig)
    return parser


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run's config: a --config file's values under the flags typed (dict options merge key by key)."""
    from_file = options.read_config_file(args.config, RunConfig) if args.config else {}
    return options.build(RunConfig, options.merge(from_file, options.given(args, RunConfig), PAIR_FLAGS))


def cmd_list() -> None:
    from continual.answer_metrics import TITLES
    from continual.models import ALIASES, DEFAULT_MODEL
    from continual.probes import PROBES
    from continual.streams import STREAMS, get_stream
    from strategies import STRATEGIES, supported_combinations
    print("streams (--stream NAME or --stream FILE.yaml; --source offline|hub picks the data; sizes below are "
          "the offline source's; options: --stream-option name.option=value):")
    for name in STREAMS:
        spec = STREAMS.resolve(name).value
        try:
            stream, missing = get_stream(name, seed=0), None
        except ContinualError as exc:  # e.g. a benchmark's folder not given: say how to get it, list the rest
            stream, missing = None, exc
        print(f"  {name:<14} {spec.description}" + (f" [{stream.scenario}]" if stream else ""))
        if missing:
            print(f"      data unavailable: {missing}")
        for source, where in spec.sources.items():
            print(f"      {source + ':':<9}{where}")
        for key, default, text in options.describe(spec.options, f"{name}."):
            print(f"      {key} = {default}: {text}")
        for task in stream.tasks if stream else []:
            sizes = ", ".join(f"{k} {len(v)}" for k, v in task.eval.items())
            scored = (TITLES.get(task.scored_by, task.scored_by) if task.kind == "generation" else
                      "answers " + "/".join(a.strip() for a in task.answers))
            print(f"    - {task.name}: {task.description} (train {len(task.train)}; eval {sizes}; {scored})")
    print("strategies (combine with '+'; options: --strategy-option name.option=value):")
    _print_entries(STRATEGIES)
    print(f"  supported combinations: {', '.join(supported_combinations())}, and longer chains of these")
    print("probes (--probe a,b; options: --probe-option name.option=value):")
    _print_entries(PROBES)
    print("models:")
    for name, text in ALIASES.items():
        print(f"  {name:<14} {text}{'  [default]' if name == DEFAULT_MODEL else ''}")
    print("  <folder>       a local save_pretrained folder")
    print("  <org/name>     a Hugging Face hub id (needs the network)")


def _print_entries(registry) -> None:
    """Each registered class with its description and its options (name.option = default: help)."""
    for name in registry:
        entry = registry.resolve(name)
        print(f"  {name:<14} {entry.description}")
        for key, default, text in options.describe(entry.value.Config, f"{name}."):
            print(f"      {key} = {default}: {text}")


def _fmt(value, spec: str = ".3f") -> str:
    return "n/a" if value is None or value != value else format(value, spec)  # null / NaN: undefined


def _convention_line(key: str, value, text: str, width: int = 100) -> str:
    """'  key  value   convention', the convention wrapped under itself so no line passes ``width``."""
    import textwrap
    head = f"  {key:<11}{_fmt(value):>8}   "
    return textwrap.fill(text, width, initial_indent=head, subsequent_indent=" " * len(head))


def print_result(result) -> None:
    s = result.summary
    print(f"\n== {s['stream']} / {s['strategy']} / {s['model']} (seed {s['seed']}) -> {result.path}")
    print("accuracy matrix R[after stage, task] (matrix split; row 'base' = the model before any stage):")
    print(result.matrix.to_string(float_format=lambda v: f"{v:.3f}", na_rep="n/a"))
    scored = {t: m for t, m in s.get("matrix_metric", {}).items() if m != "accuracy"}
    if scored:
        print("(greedy answers scored by " + ", ".join(f"{m} for {t}" for t, m in scored.items())
              + "; log-probability accuracy for the others)")
    for split, frame in result.splits.items():
        print(f"\n{split} split:")
        print(frame.to_string(float_format=lambda v: f"{v:.3f}", na_rep="n/a"))
    for metric, frame in result.metric_matrices.items():
        print(f"\n{'log-probability accuracy' if metric == 'logprob' else 'generated answers'} ({metric}):")
        print(frame.to_string(float_format=lambda v: f"{v:.3f}", na_rep="n/a"))
    columns = s.get("probe_columns", {})
    print("\nprobes:")
    print(result.probe[["after", *columns]].to_string(index=False, na_rep="n/a",
                                                        float_format=lambda v: f"{v:.3g}" if abs(v) < 1e-2 and v
                                                        else f"{v:.3f}"))
    print("\nsummary:")
    for key in ("acc", "bwt", "fwt", "forgetting"):
        print(_convention_line(key, s[key], s['conventions'][key]))
    for key, column in columns.items():
        if column.get("headline"):
            print(_convention_line(key, s['probe'].get(key), column['description']))
    import textwrap
    print(textwrap.fill(f"trainable parameters {s['trainable_parameters']:,} of {s['total_parameters']:,}; "
                        f"wall time {s['wall_time_s']:.0f} s; peak memory {s['peak_memory_mb']:.0f} MB "
                        f"({s['peak_memory_kind']})", 100, initial_indent="  ", subsequent_indent="    "))


def print_comparison(results) -> None:
    """The strategies of one multi-strategy run side by side (the table `continual compare` writes)."""
    from continual.compare import compare_table, to_markdown
    print(f"\n== comparison of {len(results)} strategies (continual compare "
          f"{results[0].path.parent} writes it as .md/.csv/.tex)")
    print(to_markdown(compare_table(results)))


class _StderrLines(logging.Handler):
    """One ``continual: <level>: <message>`` line on whatever sys.stderr is when the record is emitted."""

    def emit(self, record):
        try:
            # tqdm.write: above any progress bar being drawn, not spliced into it
            tqdm.write(f"continual: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def configure_logging() -> None:
    """The package's diagnostics (logger "continual") as one line each on stderr."""
    logger = logging.getLogger("continual")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines())
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _terminate(signum, frame):
    raise KeyboardInterrupt("SIGTERM")  # the same way out as Ctrl-C: status recorded, one line, resumable


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    previous = None
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.command == "list":
            cmd_list()
            return 0
        if args.command in ("plot", "compare", "report"):
            from continual import compare, plots, report
            command = {"plot": plots.cmd_plot, "compare": compare.cmd_compare, "report": report.cmd_report}
            extra = {"match_to": args.match_to} if args.command == "compare" else {}
            command[args.command](args.dirs, args.out, **extra)
            return 0
        if args.command == "bench":
            from continual.bench import BenchConfig, main_bench
            return main_bench(options.build(BenchConfig, options.given(args, BenchConfig)))
        from continual import distributed
        from continual.runner import run
        def finished(result):  # each strategy's tables as its run finishes
            if distributed.is_main():  # data-parallel runs print once; asked here, after the process group is up
                print_result(result)
        results = run(run_config(args), on_finish=finished)
        if isinstance(results, list) and len(results) > 1 and distributed.is_main():
            print_comparison(results)
        return 0
    except ContinualError as exc:
        print(f"continual: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        by = "SIGTERM" if str(exc) == "SIGTERM" else "Ctrl-C"
        print(f"continual: interrupted ({by}); re-run the same command to resume after the last finished stage",
              file=sys.stderr)
        return 143 if by == "SIGTERM" else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
