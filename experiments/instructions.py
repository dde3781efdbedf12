"""The instructions stream (task-incremental instruction tuning, one instruction category per task) under
every strategy. DPO needs rejected answers; where the stream has none its runs are reported as failed and
skipped.

    python experiments/instructions.py            # CPU: 40 steps per stage (generation-scored: slower), lr x {0.3, 1, 3}, 1 seed
    python experiments/instructions.py --full     # GPU: 200 steps, 3 seeds, 3 task orders
    python experiments/instructions.py --strategies naive,lora --model tiny --steps 2 --out /tmp/instructions-smoke

Writes results/instructions/: one resumable run directory per (strategy, lr, order, seed), comparison.md/.csv/.tex,
plots/ and report.html (see experiments/common.py for every option).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Size, main  # noqa: E402

CPU = Size(steps=40, seeds=1, orders=1, lr_factors="0.3,1,3")
FULL = Size(steps=200, seeds=3, orders=3, lr_factors="0.3,1,3")

if __name__ == "__main__":
    sys.exit(main("instructions", __doc__, CPU, FULL))
