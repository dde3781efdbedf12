"""The Long Sequence benchmark (15 classification tasks; the papers' orders 4-6) under every strategy, read from
a folder in the TRACE / LLM-CL-Benchmark or O-LoRA CL_Benchmark layout.

    python experiments/long_sequence.py --data-dir ../shared/data/llm-cl-benchmark-500          # CPU: order 4
    python experiments/long_sequence.py --data-dir DIR --full                                   # GPU: orders 4-6
    python experiments/long_sequence.py --data-dir DIR --strategies naive,lora --model tiny --steps 2 --out /tmp/s

The matrix holds exact match of the greedy answer (the papers' metric: O-LoRA's AA is its final-row mean);
matrix_logprob.csv the log-probability accuracy beside it. Prompts are a paragraph long: give the runs room with a
--config file setting max_length (e.g. 256), and test_size/train_size through stream_options to bound a CPU run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Size, main  # noqa: E402

CPU = Size(steps=40, seeds=1, orders=1, lr_factors="1")
FULL = Size(steps=250, seeds=3, orders=3, lr_factors="0.3,1,3")

if __name__ == "__main__":
    sys.exit(main("long-sequence", __doc__, CPU, FULL))
