"""The facts stream (friend/enemy relations, three fictional worlds) under every strategy.

    python experiments/facts.py            # CPU: 60 steps per stage, lr x {0.3, 1, 3} per strategy, 1 seed
    python experiments/facts.py --full     # GPU: 150 steps, 3 seeds, 3 task orders
    python experiments/facts.py --strategies naive,lora --model tiny --steps 2 --out /tmp/facts-smoke

Writes results/facts/: one resumable run directory per (strategy, lr, order, seed), comparison.md/.csv/.tex,
plots/ (with the relation graph of what each final model believes) and report.html.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Size, main  # noqa: E402

CPU = Size(steps=60, seeds=1, orders=1, lr_factors="0.3,1,3")
FULL = Size(steps=150, seeds=3, orders=3, lr_factors="0.3,1,3")

if __name__ == "__main__":
    sys.exit(main("facts", __doc__, CPU, FULL))
