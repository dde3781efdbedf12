"""The experiment runner every per-stream script shares: strategies x learning rates x task orders x seeds.

    python experiments/facts.py                      # CPU-sized: every strategy, 3 learning rates each, 1 seed
    python experiments/facts.py --full               # GPU-sized: more steps, 3 seeds, 3 task orders
    python experiments/facts.py --strategies naive,lora --seeds 2 --lr-factors 1 --model tiny --out /tmp/x

Every run is a resumable run directory OUT/<strategy>/lr<lr>/order<k>-seed<s>/ (re-running the command continues
where it stopped and reuses finished runs). Learning rates are each strategy's default times ``--lr-factors`` (or
``--lrs``, the same for every strategy); ``--sweep`` limits the sweep to some strategies, the others run at their
default only. Task order 0 is the stream's own order; orders 1.. are the other rotations of the task list, then the
remaining permutations. At the end OUT holds comparison.md/.csv/.tex (mean ± Student-t 95% interval over seeds and
orders), plots/ and report.html, and the table is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a clone without installing the package
    sys.path.insert(0, str(ROOT))

import continual  # noqa: E402
from continual.errors import ContinualError  # noqa: E402


@dataclasses.dataclass
class Size:
    """The defaults of one size of an experiment (CPU or --full)."""
    steps: int = 60
    seeds: int = 1
    orders: int = 1
    lr_factors: str = "0.3,1,3"


def task_orders(tasks: list[str], n: int) -> list[list[str]]:
    """n distinct orders: the stream's own first, then its rotations (each task once in each position), then the
    remaining permutations in lexicographic order."""
    rotations = [tasks[k:] + tasks[:k] for k in range(len(tasks))]
    rest = [list(p) for p in itertools.permutations(tasks) if list(p) not in rotations]
    orders = rotations + rest
    if not 1 <= n <= len(orders):
        raise ContinualError(f"--orders {n}: {len(tasks)} tasks have {len(orders)} distinct orders; choose 1 to "
                             f"{len(orders)}")
    return orders[:n]


def learning_rates(default: float, factors: list[float]) -> list[float]:
    # three significant digits: 0.3 x 1e-4 is 3e-05, not 2.9999999999999997e-05 (the lr is part of the run's hash)
    return list(dict.fromkeys(float(f"{default * f:.3g}") for f in factors))


def run_path(out: Path, strategy: str, lr: float, order: int, seed: int) -> Path:
    from continual.compare import format_lr
    return out / strategy / f"lr{format_lr(lr)}" / f"order{order}-seed{seed}"


def parse_floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ContinualError(f"{flag} '{text}' must be comma-separated numbers, e.g. 0.3,1,3") from None
    if not values or any(v <= 0 for v in values):
        raise ContinualError(f"{flag} '{text}' must list positive numbers")
    return values


def build_parser(stream: str, doc: str, cpu: Size, full: Size) -> argparse.ArgumentParser:
    from strategies import STRATEGIES
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help=f"GPU size: {full.steps} steps per stage, {full.seeds} seeds, "
                   f"{full.orders} task orders, lr factors {full.lr_factors} (CPU default: {cpu.steps} steps, "
                   f"{cpu.seeds} seed, {cpu.orders} order, lr factors {cpu.lr_factors}); flags below override")
    p.add_argument("--model", default="smollm2-135m", help="model alias, folder or hub id (default: smollm2-135m)")
    p.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated (default: every registered "
                   "strategy, joint included)")
    p.add_argument("--seeds", type=int, help="seeds 0..N-1")
    p.add_argument("--orders", type=int, help="task orders (1 = the stream's own)")
    p.add_argument("--steps", type=int, help="optimizer steps per stage")
    p.add_argument("--lr-factors", help="learning rates as multiples of each strategy's default, comma-separated")
    p.add_argument("--lrs", help="absolute learning rates for every strategy, comma-separated (replaces "
                   "--lr-factors)")
    p.add_argument("--sweep", default=None, help="strategies whose learning rate is swept (default: all); the "
                   "others run at their default learning rate only")
    p.add_argument("--match-to", default="naive", metavar="STRATEGY", help="with a learning-rate sweep, also write "
                   "matched.md: per strategy the learning rate whose `learned` is nearest this strategy's at its "
                   "default learning rate (default: naive)")
    p.add_argument("--config", metavar="FILE", help="YAML of further run options for every run (the keys of "
                   "`continual run --config`, e.g. batch_size, device, eval_cap)")
    p.add_argument("--data-dir", default="", help="the data folder of a stream that reads one (the benchmark "
                   "streams; default: $CONTINUAL_BENCHMARK_DIR)")
    p.add_argument("--out", default=f"results/{stream}", help=f"results folder (default: results/{stream})")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    return p


def main(stream: str, doc: str, cpu: Size, full: Size, argv=None) -> int:
    args = build_parser(stream, doc, cpu, full).parse_args(argv)
    try:
        return run_experiment(stream, args, full if args.full else cpu)
    except ContinualError as exc:
        print(f"{stream} experiment: error: {exc}", file=sys.stderr)
        return 2


def run_experiment(stream: str, args, size: Size) -> int:
    from continual import compare, plots, report
    from continual.config import RunConfig
    from continual.options import read_config_file
    from strategies import make_strategy

    seeds = args.seeds if args.seeds is not None else size.seeds
    n_orders = args.orders if args.orders is not None else size.orders
    steps = args.steps if args.steps is not None else size.steps
    if seeds < 1 or steps < 1:
        raise ContinualError("--seeds and --steps must be at least 1")
    factors = parse_floats(args.lr_factors or size.lr_factors, "--lr-factors")
    absolute = parse_floats(args.lrs, "--lrs") if args.lrs else None
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    swept = set(strategies if args.sweep is None else [s.strip() for s in args.sweep.split(",")])
    options = read_config_file(args.config, RunConfig) if args.config else {}
    fixed = {"stream", "strategy", "model", "seed", "steps", "lr", "tasks", "out"} & set(options)
    if fixed:
        raise ContinualError(f"--config sets {', '.join(sorted(fixed))}, which the experiment chooses per run; "
                             "use the script's flags instead")
    from continual.runner import stream_for
    if args.data_dir:
        options["data_dir"] = args.data_dir
    built = stream_for(RunConfig(**{k: v for k, v in options.items() if k in ("stream_options", "data_dir",
                                                                                "source")}, stream=stream))
    if built.orders:  # the papers' named orders (benchmark streams): order k is the k-th of them
        names = list(built.orders)
        if not 1 <= n_orders <= len(names):
            raise ContinualError(f"--orders {n_orders}: {stream} has {len(names)} named orders ({', '.join(names)})")
        orders, order_names = [built.orders[n] for n in names[:n_orders]], names[:n_orders]
    else:
        orders, order_names = task_orders(built.task_names, n_orders), None
    out = Path(args.out)

    plan, defaults = [], {}
    for strategy in strategies:
        default = defaults[strategy] = make_strategy(strategy).default_lr  # unknown names fail here, before any run
        lrs = [default] if strategy not in swept else absolute or learning_rates(default, factors)
        plan += [(strategy, lr, k, seed) for lr in lrs for k in range(len(orders)) for seed in range(seeds)]
    print(f"{stream} experiment: {len(plan)} runs ({len(strategies)} strategies, {seeds} seed(s), "
          f"{len(orders)} order(s), {steps} steps per stage) into {out}")

    done, failed = [], []
    for i, (strategy, lr, k, seed) in enumerate(plan, 1):
        path = run_path(out, strategy, lr, k, seed)
        print(f"[{i}/{len(plan)}] {strategy} lr={lr:g} order={','.join(orders[k])} seed={seed} -> {path}",
              flush=True)
        try:
            continual.run(**{**options, "stream": stream, "strategy": strategy, "model": args.model, "seed": seed,
                             "steps": steps, "lr": lr,
                             **({"order": order_names[k]} if order_names else
                                {"tasks": "" if k == 0 else ",".join(orders[k])}),
                             "out": str(path), "progress": args.progress})
            done.append(path)
        except ContinualError as exc:  # one strategy that cannot run (e.g. DPO without rejected answers) stops
            failed.append((path, str(exc)))  # only itself
            print(f"  failed: {exc}", file=sys.stderr)
    if not done:
        raise ContinualError("no run completed; see the errors above")

    runs = compare.find_runs(done)
    table = compare.compare_table(runs)
    written = compare.write_tables(table, out)
    written += plots.write_plots(runs, out / "plots")
    written.append(report.write_report(runs, out / "report.html", title=f"{stream} experiment, {args.model}",
                                       plots_dir=out / "plots"))
    if "acc_validation" in table and table[table["strategy"] != compare.BASE_LABEL].duplicated("strategy").any():
        # a sweep with a validation split: the learning rate is chosen there, and the test split reported
        picked, chosen = compare.select_on(table, "acc_validation")
        written += compare.write_tables(picked, out, stem="selected")
        print("\nlearning rates chosen on the validation split (selected.md reports their test scores): "
              + ", ".join(f"{s} {lr}" for s, lr in chosen.items()))
    swept_lrs = any(len({lr for s, lr, _, _ in plan if s == strategy}) > 1 for strategy in strategies)
    if args.match_to in defaults and swept_lrs:
        # each strategy also at the learning rate where it learns as much as the reference: less forgetting
        # bought by learning less is not a better method
        try:
            at = compare.format_lr(defaults[args.match_to])
            picked, chosen, target = compare.matched_on(table, args.match_to, at)
            written += compare.write_matched(picked, chosen, target, f"{args.match_to}@{at}", out)
        except ContinualError as exc:  # e.g. the reference's runs failed: the other tables stand
            print(f"matched.md not written: {exc}", file=sys.stderr)
    print()
    print(compare.to_markdown(table))
    print(f"written: {', '.join(str(p) for p in written if p.suffix != '.svg')} (+ SVG copies of the plots)")
    for path, error in failed:
        print(f"failed: {path}: {error}", file=sys.stderr)
    return 1 if failed else 0
