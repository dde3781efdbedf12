"""The forgetting phenomena the toolkit exists to measure, on the real default model (SmolLM2-135M-Instruct), at a
CPU-sized budget: class-incremental naive training collapses the earlier task while replay keeps it, and retention
falls as the learning rate rises. (Naive training raising facts accuracy is tests/test_smollm2.py.)

Each test runs seed 0 of its configuration and asserts a margin, not a number. The margins come from the spread of
seeds 0, 1 and 2 of the same configuration (``python -m tests.test_phenomena`` runs them into results/phenomena and
prints each statistic); the values measured and the margins chosen are in MEASURED below.
"""

import sys
from pathlib import Path

import pytest

import continual

pytestmark = pytest.mark.slow

COMMON = dict(model="smollm2-135m", batch_size=8, progress=False, plots=False)
TOPICS = dict(stream="topics", tasks="reviews,commentary", steps=12, eval_cap=20, **COMMON)
FACTS = dict(stream="facts", tasks="hogwarts", strategy="naive", steps=20, eval_cap=30, probe="cloze", **COMMON)
FEW_PROBES = dict(probe="kl", probe_options={"kl.tokens": 64})  # a run needs one probe; the cheapest
CONFIGS = {
    # topics is class-incremental: after "commentary" the model is scored on reviews over all four labels
    "topics-naive": dict(strategy="naive", **FEW_PROBES, **TOPICS),
    "topics-replay": dict(strategy="replay", **FEW_PROBES, **TOPICS),
    "facts-lr1e-4": dict(lr=1e-4, **FACTS),
    "facts-lr1e-3": dict(lr=1e-3, **FACTS),
}


def statistic(name: str, run) -> float:
    """What each configuration's phenomenon is read from."""
    if name.startswith("topics"):
        return float(run.matrix.loc["commentary", "reviews"])  # the first task after the second stage
    return float(run.probe.set_index("after").loc["hogwarts", "retention"])


def run_config(name: str, seed: int, out: Path):
    return continual.run(**CONFIGS[name], seed=seed, out=str(out))


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    root = tmp_path_factory.mktemp("phenomena")
    return {name: statistic(name, run_config(name, 0, root / name)) for name in CONFIGS}


def test_class_incremental_naive_collapses_the_first_task_and_replay_keeps_it(measured):
    naive, replay = measured["topics-naive"], measured["topics-replay"]
    assert naive <= NAIVE_AT_MOST, naive
    assert replay >= REPLAY_AT_LEAST, replay
    assert replay - naive >= GAP_AT_LEAST, (naive, replay)


def test_retention_falls_as_the_learning_rate_rises(measured):
    low, high = measured["facts-lr1e-4"], measured["facts-lr1e-3"]
    assert low - high >= RETENTION_DROP_AT_LEAST, (low, high)


# Seeds 0, 1, 2 of each configuration (python -m tests.test_phenomena, 2 CPU cores, 2026-12-01, transformers 5.24):
MEASURED = {
    "topics-naive": (0.000, 0.000, 0.000),   # reviews after commentary: collapsed in every seed (chance 0.25)
    "topics-replay": (0.850, 0.700, 0.450),  # kept, with a wide spread (sd 0.20)
    "facts-lr1e-4": (0.936, 0.873, 0.837),   # retention after one 20-step stage
    "facts-lr1e-3": (0.136, 0.073, 0.073),   # the same at 10x the learning rate (drops 0.80, 0.80, 0.76)
}
# Margins: about one seed-spread beyond the worst seed measured, so another seed (or library version) still
# passes, and each still far from the other side: naive below chance, replay well above it.
NAIVE_AT_MOST = 0.10
REPLAY_AT_LEAST = 0.25
GAP_AT_LEAST = 0.25
RETENTION_DROP_AT_LEAST = 0.40


if __name__ == "__main__":  # calibrate: every configuration at seeds 0, 1, 2 (resumable run directories)
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/phenomena")
    for name in CONFIGS:
        values = [statistic(name, run_config(name, seed, root / name / f"seed{seed}")) for seed in range(3)]
        print(f"{name}: {', '.join(f'{v:.3f}' for v in values)}", flush=True)
