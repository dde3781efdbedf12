"""The ``continual`` command line: ``run`` (a stream under one or more strategies), ``list``, and ``plot``,
``compare``, ``report`` over finished run directories.

Every RunConfig field is a flag of ``run`` (``--batch-size 8``, ``--chat-template/--no-chat-template``). Bad input
ends with one ``continual: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import MISSING, fields

from continual.config import RunConfig, read_yaml
from continual.errors import ContinualError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="continual", description="Measure what a causal LM forgets when it is "
                                     "fine-tuned on one task after another.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a stream stage by stage and score every task after every stage")
    run.add_argument("--config", metavar="FILE", help="YAML file of run options (the keys are the flags below, with "
                     "underscores); flags given on the command line override it")
    for f in fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        # SUPPRESS: an option not given stays unset, so a --config file's value is not overwritten by a default
        if f.type == "dict":  # strategy_options: --strategy-option KEY=VALUE, repeatable
            run.add_argument("--strategy-option", dest=f.name, action="append", default=argparse.SUPPRESS,
                             metavar="KEY=VALUE", help=f.metadata["help"])
        elif f.type == "bool":
            run.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                             help=f"{f.metadata['help']} (default: {default})")
        else:
            kind = {"int": int, "float": float, "float | None": float}.get(f.type, str)
            run.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=f.name.upper(),
                             help=f"{f.metadata['help']} (default: {default})")
    sub.add_parser("list", help="built-in streams, strategies and model aliases")
    for name, text, out in (
            ("plot", "forgetting plots (PNG + SVG) of run directories", "folder for the plots (default: RUN/plots "
             "for one run, else DIR/plots of the first DIR)"),
            ("compare", "strategy x metric table (Markdown, CSV, LaTeX) over run directories, mean ± 95%% "
             "t-interval over seeds", "folder for comparison.md/.csv/.tex (default: the first DIR)"),
            ("report", "one self-contained HTML report (tables, plots, run configs) of run directories",
             "HTML file to write (default: DIR/report.html of the first DIR)")):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("dirs", nargs="+", metavar="DIR", help="run directories, or folders holding them "
                         "(searched recursively)")
        cmd.add_argument("--out", default=None, help=out)
    from continual.bench import add_arguments as bench_arguments
    bench_arguments(sub.add_parser("bench", help="evaluation and training throughput against plain baselines, "
                                   "peak memory per strategy, end-to-end time (see docs/benchmarks.md)"))
    return parser


def parse_pairs(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise ContinualError(f"--strategy-option '{pair}' must read strategy.option=value, e.g. replay.ratio=0.5")
        out[key.strip()] = value.strip()
    return out


def load_config_file(path: str) -> dict:
    """Run options from YAML: a mapping whose keys are RunConfig fields."""
    data = read_yaml(path, "config file")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ContinualError(f"config file '{path}' must be a mapping of option: value, got {type(data).__name__}")
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ContinualError(f"config file '{path}' has unknown option(s) {', '.join(map(str, unknown))}; "
                             f"known: {', '.join(sorted(known))}")
    for f in fields(RunConfig):  # YAML 1.1 reads 1e-4 as a string; numbers are meant
        kind = f.type.replace(" | None", "")
        if f.name in data and kind in ("int", "float") and isinstance(data[f.name], str):
            try:
                data[f.name] = {"int": int, "float": float}[kind](data[f.name])
            except ValueError:
                raise ContinualError(f"config file '{path}': {f.name} must be {kind}, got {data[f.name]!r}") from None
    return data


def cmd_list() -> None:
    from continual.models import ALIASES, DEFAULT_MODEL
    from continual.streams import STREAM_SOURCES, STREAMS
    from strategies import STRATEGIES, SUPPORTED_COMBINATIONS
    print("streams (--stream NAME or --stream FILE.yaml; --source offline|hub picks the data; sizes below are "
          "the offline source's):")
    for name, (build, text) in STREAMS.items():
        try:
            stream = build(seed=0)
        except ContinualError as exc:  # e.g. offline data not installed: say so and list the rest
            print(f"  {name:<14} {text}\n      offline data unavailable: {exc}")
            continue
        print(f"  {name:<14} {text} [{stream.scenario}]")
        for source, where in STREAM_SOURCES[name].items():
            print(f"      {source + ':':<9}{where}")
        for task in stream.tasks:
            sizes = ", ".join(f"{k} {len(v)}" for k, v in task.eval.items())
            answers = task.classes or (task.eval[task.matrix_split][0]["candidates"] if task.kind == "choice" else [])
            scored = "ROUGE-L F1" if task.kind == "generation" else "answers " + "/".join(a.strip() for a in answers)
            print(f"    - {task.name}: {task.description} (train {len(task.train)}; eval {sizes}; {scored})")
    print("strategies (combine with '+'; options: --strategy-option name.option=value):")
    for name, (cls, text) in STRATEGIES.items():
        print(f"  {name:<14} {text}")
        for f in fields(cls.Config):
            print(f"      {name}.{f.name} = {f.default!r}: {f.metadata.get('help', '')}")
    print(f"  supported combinations: {SUPPORTED_COMBINATIONS}")
    print("models:")
    for name, text in ALIASES.items():
        print(f"  {name:<14} {text}{'  [default]' if name == DEFAULT_MODEL else ''}")
    print("  <folder>       a local save_pretrained folder")
    print("  <org/name>     a Hugging Face hub id (needs the network)")


def print_result(result) -> None:
    s = result.summary
    print(f"\n== {s['stream']} / {s['strategy']} / {s['model']} (seed {s['seed']}) -> {result.path}")
    print("accuracy matrix R[after stage, task] (matrix split; row 'base' = the model before any stage):")
    print(result.matrix.to_string(float_format=lambda v: f"{v:.3f}"))
    rouge = [t for t, m in s.get("matrix_metric", {}).items() if m == "rougeL_f1"]
    if rouge:
        print(f"(ROUGE-L F1 of greedy generations for {', '.join(rouge)}; accuracy for the others)")
    other = sorted(set(result.scores["split"]) - set(s["matrix_split"].values()))
    for split in other:
        print(f"\n{split} split:")
        print(result.split_matrix(split).to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nretention probe:")
    cols = ["after", "cloze", "retention", "perplexity", "ppl_ratio", "kl"]
    print(result.probe[cols].to_string(index=False, formatters={"kl": "{:.2e}".format},
                                       float_format=lambda v: f"{v:.3f}"))
    print("\nsummary:")
    for key in ("acc", "bwt", "fwt", "forgetting", "retention"):
        value = s[key]
        shown = "n/a" if value is None else f"{value:.3f}"  # null: undefined (one task, or joint)
        print(f"  {key:<11}{shown:>8}   {s['conventions'][key]}")
    print(f"  trainable parameters {s['trainable_parameters']:,} of {s['total_parameters']:,}; "
          f"wall time {s['wall_time_s']:.0f} s; peak memory {s['peak_memory_mb']:.0f} MB ({s['peak_memory_kind']})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            cmd_list()
            return 0
        if args.command in ("plot", "compare", "report"):
            from continual import compare, plots, report
            {"plot": plots.cmd_plot, "compare": compare.cmd_compare, "report": report.cmd_report}[args.command](
                args.dirs, args.out)
            return 0
        if args.command == "bench":
            from continual.bench import main_bench
            return main_bench(args)
        from continual.runner import run
        options = load_config_file(args.config) if args.config else {}
        from_file = options.get("strategy_options")
        options.update({f.name: getattr(args, f.name) for f in fields(RunConfig) if hasattr(args, f.name)})
        if isinstance(options.get("strategy_options"), list):  # flags add to (and override) the file's options
            merged = dict(from_file) if isinstance(from_file, dict) else {}
            options["strategy_options"] = {**merged, **parse_pairs(options["strategy_options"])}
        results = run(RunConfig(**options))
        from continual import distributed
        for result in (results if isinstance(results, list) else [results]) if distributed.is_main() else []:
            print_result(result)  # data-parallel runs: once, from the main process
        return 0
    except ContinualError as exc:
        print(f"continual: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("continual: interrupted; re-run the same command to resume after the last finished stage",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
