"""The facts stream under every registered strategy, one seed or several; prints a strategy x metric table.

    python experiments/facts.py                       # default model, CPU-sized, into results/facts/
    python experiments/facts.py --model tiny --steps 5 --out /tmp/facts-smoke

Each (strategy, seed) is a resumable run directory results/facts/<strategy>/seed<k>/.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

import continual
from continual.errors import ContinualError
from strategies import STRATEGIES

METRICS = ["acc", "bwt", "fwt", "forgetting", "retention"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    parser.add_argument("--steps", type=int, default=continual.RunConfig.steps)
    parser.add_argument("--lr", type=float, default=continual.RunConfig.lr)
    parser.add_argument("--out", default="results/facts")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    rows = []
    try:
        for strategy in args.strategies.split(","):
            for seed in range(args.seeds):
                result = continual.run(stream="facts", strategy=strategy, model=args.model, seed=seed,
                                       steps=args.steps, lr=args.lr,
                                       out=os.path.join(args.out, strategy, f"seed{seed}"))
                summary = result.summary
                rows.append({"strategy": strategy, "seed": seed, **{m: summary[m] for m in METRICS},
                             "ppl_ratio": summary["probe"]["ppl_ratio"], "kl": summary["probe"]["kl"],
                             "lr": summary["lr"], "trainable": summary["trainable_parameters"],
                             "wall_s": summary["wall_time_s"]})
    except ContinualError as exc:
        print(f"facts experiment: error: {exc}", file=sys.stderr)
        return 2
    columns = METRICS + ["ppl_ratio", "kl", "lr", "trainable", "wall_s"]
    table = pd.DataFrame(rows).groupby("strategy", sort=False)[columns].mean()
    print(f"\nfacts stream, {args.model}, {args.steps} steps per stage, mean over {args.seeds} seed(s):")
    print(table.to_string(float_format=lambda v: f"{v:+.3f}", formatters={
        "lr": "{:.0e}".format, "trainable": "{:,.0f}".format, "wall_s": "{:.0f}".format}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
