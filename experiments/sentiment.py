"""The sentiment stream (domain-incremental: positive/negative, a new text domain per task) under every
strategy.

    python experiments/sentiment.py            # CPU: 60 steps per stage, lr x {0.3, 1, 3} per strategy, 1 seed
    python experiments/sentiment.py --full     # GPU: 200 steps, 3 seeds, 3 task orders
    python experiments/sentiment.py --strategies naive,lora --model tiny --steps 2 --out /tmp/sentiment-smoke

Writes results/sentiment/: one resumable run directory per (strategy, lr, order, seed), comparison.md/.csv/.tex,
plots/ and report.html (see experiments/common.py for every option).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Size, main  # noqa: E402

CPU = Size(steps=60, seeds=1, orders=1, lr_factors="0.3,1,3")
FULL = Size(steps=200, seeds=3, orders=3, lr_factors="0.3,1,3")

if __name__ == "__main__":
    sys.exit(main("sentiment", __doc__, CPU, FULL))
