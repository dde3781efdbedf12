"""The mixed stream (facts -> sentiment -> topics -> instructions: task-incremental across formats) under
every strategy.

    python experiments/mixed.py            # CPU: 40 steps per stage, each strategy at its default lr, 1 seed (4 stages)
    python experiments/mixed.py --full     # GPU: 150 steps, 3 seeds, 4 task orders, lr x {0.3, 1, 3}
    python experiments/mixed.py --strategies naive,lora --model tiny --steps 2 --out /tmp/mixed-smoke

Writes results/mixed/: one resumable run directory per (strategy, lr, order, seed), comparison.md/.csv/.tex,
plots/ and report.html (see experiments/common.py for every option).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Size, main  # noqa: E402

CPU = Size(steps=40, seeds=1, orders=1, lr_factors="1")
FULL = Size(steps=150, seeds=3, orders=4, lr_factors="0.3,1,3")

if __name__ == "__main__":
    sys.exit(main("mixed", __doc__, CPU, FULL))
