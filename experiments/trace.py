"""TRACE (C-STANCE, FOMC, MeetingBank, Py150, ScienceQA, NumGLUE-cm, NumGLUE-ds, 20Minuten, in TRACE's order) under
every strategy, read from a folder in the TRACE layout.

    python experiments/trace.py --data-dir DIR                                  # CPU
    python experiments/trace.py --data-dir DIR --full                           # GPU: 3 seeds
    python experiments/trace.py --data-dir DIR --strategies naive --model tiny --steps 2 --out /tmp/t

Each task is scored as TRACE scores it (exact match, the answer letter, the number, ROUGE-L, edit similarity,
SARI); OP and BWT in the summary follow TRACE's definitions. The shared copy lacks MeetingBank's train.json: leave
the task out with a --config file holding stream_options: {trace.tasks: "C-STANCE,FOMC,Py150,ScienceQA,NumGLUE-cm,
NumGLUE-ds,20Minuten"} (TRACE's order of the rest).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Size, main  # noqa: E402

CPU = Size(steps=40, seeds=1, orders=1, lr_factors="1")
FULL = Size(steps=250, seeds=3, orders=1, lr_factors="0.3,1,3")

if __name__ == "__main__":
    sys.exit(main("trace", __doc__, CPU, FULL))
