"""Which transformers this suite runs on: ``make test-oldest`` lays the oldest release pyproject.toml admits over
the venv's and runs the parts of the suite that touch transformers' APIs; this test says which one was tested."""

import os
import re
from pathlib import Path

import transformers

ROOT = Path(__file__).resolve().parents[1]


def test_the_tested_transformers_is_within_pyprojects_range():
    declared = re.search(r'"transformers>=([\d.]+),<(\d+)"', (ROOT / "pyproject.toml").read_text())
    low, high = tuple(map(int, declared.group(1).split("."))), int(declared.group(2))
    version = tuple(int(p) for p in re.findall(r"\d+", transformers.__version__)[:3])
    assert low <= version[:len(low)] and version[0] < high, transformers.__version__
    oldest = os.environ.get("PYTHONPATH", "")
    if ".oldest" in oldest:  # under make test-oldest: the overlay is the one imported, and it is the lower bound
        assert transformers.__file__.startswith(str(ROOT / oldest.split(os.pathsep)[0])), transformers.__file__
        assert version[:len(low)] == low, transformers.__version__
