"""The strategy package imports on its own, in a fresh interpreter, as the process's first import
(`python -c "import strategies"`): an import cycle (a module importing a partly initialised one) shows only there,
not in a test process where other modules were imported first. Importing any ``strategies.<module>`` first runs
the package's ``__init__`` (every strategy module) first, so ``import strategies`` covers them; the runner and the
CLI import it from the other side (continual first)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", ["strategies", "strategies.ewc", "continual.runner"])
def test_imports_alone_in_a_fresh_interpreter(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}; import strategies; print(*strategies.STRATEGIES.names())"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    assert {"naive", "ewc", "replay", "distill", "lora", "joint"} <= set(done.stdout.split())  # registered
